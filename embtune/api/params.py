"""Path and query parameter types that need FastAPI, kept out of the framework-free schemas."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from embtune.schemas.common import NO_NUL

PathId = Annotated[str, Path(pattern=NO_NUL)]
