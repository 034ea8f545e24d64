"""The composition root: builds every collaborator from settings, once, at start-up.

Used by the app factory (`embtune serve`) and the worker start-up (`embtune worker`); nothing
else constructs engines, brokers or services.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from embtune import allocator
from embtune.artifacts import ArtifactStore, ServiceAreas, make_artifact_store
from embtune.config import Settings
from embtune.domain.imports import ImportDataKind
from embtune.domain.retry import RetryPolicy
from embtune.plugins.registry import PluginRegistry
from embtune.queue.brokers import BrokerBundle, build_broker
from embtune.queue.dispatch import Dispatcher, declare_actor
from embtune.services.aliases import AliasService
from embtune.services.catalogue import CatalogueService
from embtune.services.clickstream import ClickstreamService
from embtune.services.clickstream_bulk import ClickstreamBulk
from embtune.services.erasure import AuditTrail, ErasureService
from embtune.services.evaluation_sets import EvaluationSetService
from embtune.services.import_run import ImportRun
from embtune.services.imports import ImportService
from embtune.services.items_bulk import ItemsBulk
from embtune.services.models import ModelRegistry
from embtune.services.recovery import PeriodicRecovery, Recovery
from embtune.services.reindex import ReindexService
from embtune.services.reindex_run import ReindexRun
from embtune.services.retention import PeriodicRetention, RetentionService
from embtune.services.runner import TaskRunner
from embtune.services.search_trials import SearchTrialService
from embtune.services.tasks import TaskService
from embtune.services.throughput import ThroughputHistory
from embtune.services.webhook_sender import PeriodicWebhooks, WebhookSender
from embtune.services.webhooks import WebhookService
from embtune.services.weights import ModelWeights
from embtune.sinks.base import SinkContext
from embtune.sinks.registry import SinkRegistry
from embtune.storage import migrate
from embtune.storage.db import Database, DbTimeouts, make_engine
from embtune.tracking import build_tracker

log = logging.getLogger(__name__)

WORKER_POLL_MS = 100  # how long an idle consumer waits before polling again: dispatch latency


def prepare_task_process(settings: Settings) -> None:
    """Process-wide set-up for a process that will run tasks; call it before starting threads.

    The allocator settings (`embtune.allocator`) reach every thread only when they are made
    before the process has several malloc arenas, i.e. before threads start allocating; the
    CLI calls this first thing, `Runtime.start_worker` again for embedders (idempotent).
    """
    if settings.tune_allocator:
        allocator.retain_freed_memory()


def db_timeouts(settings: Settings) -> DbTimeouts:
    """The bounds on every wait of the serving engine (a stalled database answers 503)."""
    return DbTimeouts(
        connect_s=settings.db_connect_timeout_s,
        statement_s=settings.db_statement_timeout_s,
        pool_s=settings.db_pool_timeout_s,
    )


def _migrate(db: Database, url: str) -> None:
    """Migrations run without the statement timeout: on PostgreSQL they may wait for another
    starter's advisory lock or rebuild an index for longer, so they get an engine of their own
    (SQLite's only bound is its lock wait, which the serving engine's busy timeout sets)."""
    if db.dialect == "sqlite":
        migrate.upgrade(db.engine)
        return
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    plugins: PluginRegistry
    broker: BrokerBundle
    dispatcher: Dispatcher
    artifacts: ArtifactStore
    models: ModelRegistry
    tasks: TaskService
    runner: TaskRunner
    recovery: Recovery
    weights: ModelWeights
    clickstream: ClickstreamService
    catalogue: CatalogueService
    evaluation_sets: EvaluationSetService
    aliases: AliasService
    sinks: SinkRegistry
    reindex: ReindexService
    clickstream_bulk: ClickstreamBulk
    items_bulk: ItemsBulk
    imports: ImportService
    retention: RetentionService
    erasure: ErasureService
    audit: AuditTrail
    search_trials: SearchTrialService
    webhooks: WebhookService
    _worker: dramatiq.Worker | None = field(default=None, init=False)
    _periodic: PeriodicRecovery | None = field(default=None, init=False)
    _retention: PeriodicRetention | None = field(default=None, init=False)
    _webhook_sender: PeriodicWebhooks | None = field(default=None, init=False)

    def measure_host(self) -> dict[str, Any]:
        """The host's matrix-multiply peak (fp32, and bf16/fp16 where native), measured once
        and cached in the data dir; a run reports its phases' utilization against it."""
        import torch

        from embtune.training.run import host_peaks_for

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return host_peaks_for(self.runner.cache_dir, device)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        run_migrations: bool = True,
    ) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(make_engine(settings.resolved_database_url, db_timeouts(settings)))
        if run_migrations:
            _migrate(db, settings.resolved_database_url)
        plugins = PluginRegistry.discover(settings.plugins)
        bundle = build_broker(settings, db)
        dispatcher = Dispatcher(bundle, settings.queue_name)
        artifacts = make_artifact_store(
            settings.artifact_url, settings.models_dir, settings.artifact_cache_dir
        )
        clickstream = ClickstreamService(db, settings)
        areas = ServiceAreas.of(
            settings.data_dir, settings.models_dir, settings.resolved_database_url
        )
        models = ModelRegistry(db, plugins, settings.allowed_model_roots, artifacts, areas)
        cache_dir = settings.data_dir.resolve() / "cache" / "embeddings"
        throughput = ThroughputHistory(db, settings.resolved_host_name)
        tasks = TaskService(
            db, plugins, dispatcher, settings.abort_grace_s, clickstream,
            throughput=throughput, cache_dir=cache_dir,
        )
        sinks = SinkRegistry.discover(
            SinkContext(
                data_dir=settings.data_dir.resolve(),
                qdrant_url=settings.qdrant_url,
                qdrant_api_key=(
                    settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
                ),
            )
        )
        clickstream_bulk = ClickstreamBulk(db, settings)
        items_bulk = ItemsBulk(db, settings)
        runner = TaskRunner(
            db,
            plugins,
            artifacts,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            clickstream=clickstream,
            requeue=tasks.send,
            cache_dir=cache_dir,
            reindex=ReindexRun(
                db, sinks, artifacts, cache_dir=cache_dir, retention=settings.sink_retention,
                shard_items=settings.reindex_shard_items,
            ),
            imports=ImportRun(
                db, {ImportDataKind.sessions: clickstream_bulk, ImportDataKind.items: items_bulk},
                chunk_rows=settings.import_chunk_rows,
            ),
            throughput=throughput,
            tracker=build_tracker(settings),  # MlflowNotInstalled: the URI without the extra
            checkpoint_keep=settings.checkpoint_keep,
        )
        recovery = Recovery(
            db,
            tasks,
            RetryPolicy(settings.max_attempts),
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            undelivered_after_s=settings.undelivered_after_s,
            redeliver_after_s=settings.redeliver_after_s,
            artifacts=artifacts,
        )
        weights = ModelWeights(models)
        aliases = AliasService(db, sinks, send=tasks.send)
        return cls(
            settings=settings,
            db=db,
            plugins=plugins,
            broker=bundle,
            dispatcher=dispatcher,
            artifacts=artifacts,
            models=models,
            weights=weights,
            tasks=tasks,
            runner=runner,
            recovery=recovery,
            clickstream=clickstream,
            catalogue=CatalogueService(db, settings),
            evaluation_sets=EvaluationSetService(db),
            aliases=aliases,
            sinks=sinks,
            reindex=ReindexService(db, tasks, sinks, aliases, weights),
            clickstream_bulk=clickstream_bulk,
            items_bulk=items_bulk,
            imports=ImportService(db, tasks, settings),
            retention=RetentionService(db, settings),
            erasure=ErasureService(db, settings),
            audit=AuditTrail(db),
            search_trials=SearchTrialService(db),
            webhooks=WebhookService(db, settings),
        )

    def start_worker(self, threads: int | None = None) -> dramatiq.Worker:
        """Consume the task queue in this process (embedded mode and `embtune worker`)."""
        prepare_task_process(self.settings)
        declare_actor(
            self.broker,
            self.settings.queue_name,
            self.runner.handle,
            int(self.settings.task_time_limit_s * 1000),
        )
        worker = dramatiq.Worker(
            self.broker.broker,
            queues={self.settings.queue_name},
            worker_threads=threads or self.settings.worker_threads,
            worker_timeout=WORKER_POLL_MS,
        )
        worker.start()
        self._worker = worker
        # webhooks go out wherever tasks run: from the outbox, never from a request
        self._webhook_sender = PeriodicWebhooks(
            WebhookSender(self.db, self.settings), self.settings.webhook_poll_interval_s
        )
        self._webhook_sender.start()
        if self.broker.kind == "embedded":
            # The in-memory queue died with the last process: every pending task goes again.
            resent = self.recovery.resend_all_pending()
            if resent:
                log.info("resent %d pending task(s) to the embedded broker", resent)
        return worker

    def start_recovery(self) -> None:
        self._periodic = PeriodicRecovery(self.recovery, self.settings.recovery_interval_s)
        self._periodic.start()
        if self.retention.enabled:  # pruning runs wherever recovery does: API and workers
            self._retention = PeriodicRetention(
                self.retention, self.settings.retention_interval_s
            )
            self._retention.start()

    def close(self) -> None:
        if self._webhook_sender is not None:
            self._webhook_sender.stop()
        if self._periodic is not None:
            self._periodic.stop()
        if self._retention is not None:
            self._retention.stop()
        if self._worker is not None:
            self._worker.stop(timeout=int(self.settings.abort_grace_s * 1000))
        self.tasks.marks.close()
        self.broker.broker.close()
        qdrant = sys.modules.get("embtune.sinks.qdrant")  # imported only once a sink was used
        if qdrant is not None:
            qdrant.close_local_clients()  # local mode holds a file lock per data dir
        self.db.dispose()
