"""The Python client talks HTTP only: importing it must not load the server's stack.

Checked in a fresh interpreter, because this test process has long since imported the server."""

from __future__ import annotations

import json
import subprocess
import sys

# The web framework, the database layer, the queue and the training stack: a script that only
# calls the API should install and import none of them.
SERVER_ONLY = ("fastapi", "starlette", "sqlalchemy", "alembic", "dramatiq", "torch",
               "sentence_transformers")


def modules_loaded_by(statement: str) -> set[str]:
    """Top-level packages in `sys.modules` after running `statement` in a fresh interpreter."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


def test_importing_the_client_loads_no_server_package() -> None:
    loaded = modules_loaded_by("import embtune.client")
    assert "embtune" in loaded and "httpx" in loaded  # the import itself happened
    assert sorted(loaded & set(SERVER_ONLY)) == []
