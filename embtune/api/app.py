"""The app factory: `create_app(settings)` wires the runtime and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from embtune import __version__
from embtune.api.docs import install_docs
from embtune.api.errors import install_error_handlers
from embtune.api.routes import (
    aliases,
    clickstream,
    clickstream_bulk,
    data_governance,
    evaluation_sets,
    health,
    imports,
    items,
    models,
    reindex,
    tasks,
    webhooks,
)
from embtune.api.security import install_security
from embtune.config import Settings
from embtune.runtime import Runtime
from embtune.web.routes import router as dashboard_router


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    run_worker: bool | None = None,
) -> FastAPI:
    """`run_worker=None` runs an in-process worker only on the embedded broker."""
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.build(settings)
        app.state.runtime = rt
        if settings.runs_worker_in_api(run_worker):
            rt.start_worker()
        rt.start_recovery()
        try:
            yield
        finally:
            rt.close()

    app = FastAPI(
        title="embtune",
        version=__version__,
        description="Fine-tune a search engine's embedding model from its own clickstream.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    install_error_handlers(app)
    token = settings.api_token.get_secret_value() if settings.api_token else None
    install_security(app, token=token, max_body_bytes=settings.max_body_bytes)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(aliases.router)
    app.include_router(tasks.router)
    app.include_router(reindex.router)
    app.include_router(reindex.search_router)
    app.include_router(items.router)
    app.include_router(evaluation_sets.router)
    app.include_router(clickstream.router)
    app.include_router(clickstream_bulk.router)
    app.include_router(imports.router)
    app.include_router(data_governance.router)
    app.include_router(webhooks.router)
    app.include_router(dashboard_router)
    return app
