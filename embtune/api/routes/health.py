"""Liveness and readiness probes."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from embtune.api.deps import RuntimeDep
from embtune.api.readiness import ReadinessProbes
from embtune.schemas.health import Readiness

router = APIRouter(tags=["health"])
_probes_lock = threading.Lock()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: answered on the event loop, touching nothing (the framework's own cost)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
)
def readyz(request: Request, runtime: RuntimeDep) -> JSONResponse:  # waits: runs on the pool
    """Ready when the database and the broker answer; answers within `readiness_timeout_s`
    even when one of them stalls (the check is then `unreachable: no answer within …`)."""
    checks = _probes(request, runtime).run()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


def _probes(request: Request, runtime: RuntimeDep) -> ReadinessProbes:
    """One set of probes per app, so that a still-running check is shared between requests."""
    with _probes_lock:
        probes = getattr(request.app.state, "readiness", None)
        if probes is None:
            probes = ReadinessProbes(
                {"database": runtime.db.ping, "broker": runtime.dispatcher.ping},
                runtime.settings.readiness_timeout_s,
            )
            request.app.state.readiness = probes
        return probes
