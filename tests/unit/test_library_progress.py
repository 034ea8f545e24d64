"""Library progress bars stay out of embtune's output (the CLI draws its own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from embtune.training.models import load_model
model = load_model("builtin:all-MiniLM-L6-v2", 32)
model.save(sys.argv[1])
"""


def test_loading_and_saving_a_model_draws_no_library_progress_bar(tmp_path: Path) -> None:
    # a fresh interpreter: the switch is process-wide, so an earlier test must not mask it
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "saved")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    for bar in ("Loading weights", "Writing model shards", "it/s]"):
        assert bar not in output
    assert (tmp_path / "saved" / "modules.json").is_file()
