"""Every layer imports only the layers below it (README, "Architecture").

Read from the source with `ast`, function-level imports included, so a lazy import cannot hide
an upward dependency. A package may import its own modules; packages that share a layer may not
import each other (that is how folder-level loops start).
"""

from __future__ import annotations

import ast
from pathlib import Path

import embtune

# top to bottom; a name is a package (folder) or a top-level module of `embtune`
LAYERS: list[set[str]] = [
    {"cli"},
    {"demo"},
    {"console", "console_report"},  # the progress bar and the task report cli and demo share
    {"api"},
    {"web"},  # the dashboard's pages, mounted by the api
    {"runtime"},
    {"services"},
    {"plugins"},
    # imports: streaming readers of import files; tracking: experiment trackers (MLflow)
    {"training", "queue", "sinks", "imports", "tracking"},
    {"storage", "artifacts"},
    {"client"},
    # reindex, import and data-governance calls, mixins of `client.Client`
    {"client_reindex", "client_imports", "client_governance", "client_webhooks"},
    {"clickstream", "schemas"},
    {"domain", "config", "errors", "allocator", "log_redaction", "outage_log", "__init__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
ROOT = Path(embtune.__file__).parent


def _part(module: str) -> str:
    """`embtune.services.tasks` → `services`; `embtune` → `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("embtune")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "embtune":  # `from embtune import x`: a module, or a name of
                found += [  # the package itself (`__version__`)
                    (node.lineno, f"embtune.{a.name}" if (ROOT / a.name).exists()
                     or (ROOT / f"{a.name}.py").exists() else "embtune")
                    for a in node.names
                ]
            elif node.module.startswith("embtune."):
                found.append((node.lineno, node.module))
    return found


def _upward_imports() -> list[str]:
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "storage" and "migrations" in relative.parts:
            continue  # Alembic scripts are run by Alembic, not imported by layers
        here = relative.parts[0].removesuffix(".py")
        if here not in LEVEL:
            problems.append(f"{relative}: embtune/{here} is in no layer (add it to LAYERS)")
            continue
        for line, module in _imports(path):
            there = _part(module)
            if there not in LEVEL:
                problems.append(f"{relative}:{line} imports {module}, which is in no layer")
            elif there != here and LEVEL[there] <= LEVEL[here]:
                problems.append(f"{relative}:{line} imports {module} ({here} → {there})")
    return problems


def test_every_layer_imports_only_the_layers_below_it() -> None:
    assert _upward_imports() == []
