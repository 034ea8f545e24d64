"""Short dependency aliases; the runtime is built by the app factory and stored on app.state.

The getters are `async def` although they do not await: a plain `def` dependency costs a
thread-pool hop per request for an attribute lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from embtune.runtime import Runtime
from embtune.services.aliases import AliasService
from embtune.services.catalogue import CatalogueService
from embtune.services.clickstream import ClickstreamService
from embtune.services.clickstream_bulk import ClickstreamBulk
from embtune.services.erasure import AuditTrail, ErasureService
from embtune.services.evaluation_sets import EvaluationSetService
from embtune.services.imports import ImportService
from embtune.services.models import ModelRegistry
from embtune.services.reindex import ReindexService
from embtune.services.retention import RetentionService
from embtune.services.tasks import TaskService
from embtune.services.webhooks import WebhookService
from embtune.services.weights import ModelWeights


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_tasks(request: Request) -> TaskService:
    return request.app.state.runtime.tasks


async def get_models(request: Request) -> ModelRegistry:
    return request.app.state.runtime.models


async def get_clickstream(request: Request) -> ClickstreamService:
    return request.app.state.runtime.clickstream


async def get_clickstream_bulk(request: Request) -> ClickstreamBulk:
    return request.app.state.runtime.clickstream_bulk


async def get_catalogue(request: Request) -> CatalogueService:
    return request.app.state.runtime.catalogue


async def get_weights(request: Request) -> ModelWeights:
    return request.app.state.runtime.weights


async def get_aliases(request: Request) -> AliasService:
    return request.app.state.runtime.aliases


async def get_evaluation_sets(request: Request) -> EvaluationSetService:
    return request.app.state.runtime.evaluation_sets


async def get_reindex(request: Request) -> ReindexService:
    return request.app.state.runtime.reindex


async def get_retention(request: Request) -> RetentionService:
    return request.app.state.runtime.retention


async def get_erasure(request: Request) -> ErasureService:
    return request.app.state.runtime.erasure


async def get_audit_trail(request: Request) -> AuditTrail:
    return request.app.state.runtime.audit


async def get_imports(request: Request) -> ImportService:
    return request.app.state.runtime.imports


async def get_webhooks(request: Request) -> WebhookService:
    return request.app.state.runtime.webhooks


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TasksDep = Annotated[TaskService, Depends(get_tasks)]
ModelsDep = Annotated[ModelRegistry, Depends(get_models)]
ClickstreamDep = Annotated[ClickstreamService, Depends(get_clickstream)]
ClickstreamBulkDep = Annotated[ClickstreamBulk, Depends(get_clickstream_bulk)]
CatalogueDep = Annotated[CatalogueService, Depends(get_catalogue)]
WeightsDep = Annotated[ModelWeights, Depends(get_weights)]
EvaluationSetsDep = Annotated[EvaluationSetService, Depends(get_evaluation_sets)]
AliasesDep = Annotated[AliasService, Depends(get_aliases)]
ReindexDep = Annotated[ReindexService, Depends(get_reindex)]
RetentionDep = Annotated[RetentionService, Depends(get_retention)]
ErasureDep = Annotated[ErasureService, Depends(get_erasure)]
AuditTrailDep = Annotated[AuditTrail, Depends(get_audit_trail)]
ImportsDep = Annotated[ImportService, Depends(get_imports)]
WebhooksDep = Annotated[WebhookService, Depends(get_webhooks)]
