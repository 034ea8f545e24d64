"""`embtune.clickstream` is pure session logic: the simulator, BEIR loading and the demo (which
need the HTTP client and torch) live in `embtune.demo`. Read with `ast`, function-level imports
included, so a lazy `import torch` cannot hide there. numpy and scipy are allowed: the
position-bias estimate and the shown-list metric are numerical, not IO."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import embtune.clickstream


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


NUMERICAL = {"numpy", "scipy"}


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    return (top in sys.stdlib_module_names or top in NUMERICAL
            or module == "embtune.clickstream" or module.startswith("embtune.clickstream."))


def test_clickstream_package_imports_only_the_standard_library_numpy_scipy_and_itself() -> None:
    root = Path(embtune.clickstream.__file__).parent
    outside = sorted(
        f"{path.name}: {module}"
        for path in root.glob("*.py")
        for module in _imported_modules(path)
        if not _allowed(module)
    )
    assert outside == []
