"""The worker side of a task's lifecycle, in one place: claim, heartbeat, run, finish.

A message runs a task only if it can claim it (pending → processing with a matching broker id),
so a stale, duplicated or restarted message does nothing. While the plugin runs, a monitor
thread heart-beats and flushes progress once a second; when its guarded heartbeat stops matching
(task canceled or re-queued elsewhere) it raises the stop flag the plugin checks every step.
Every way out of a run — result, refusal, error, interrupt — ends in a recorded terminal state
or leaves the task to its new owner; a result is registered in the same transaction that marks
the task done, or not at all.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from dramatiq.middleware import Interrupt, Shutdown, TimeLimitExceeded
from sqlalchemy.orm import Session

from embtune import allocator
from embtune.artifacts import ArtifactStore, resolve_source
from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import Task, TaskEventKind, TaskKind, Transition
from embtune.domain.throughput import MeasuredRates
from embtune.errors import ArtifactStoreError, EmbtuneError, TaskRefused, TaskStopped
from embtune.outage_log import OutageLog
from embtune.plugins.base import (
    FineTuningPlugin,
    RunContext,
    RunResult,
    SourceModel,
    TrainingData,
)
from embtune.plugins.registry import PluginRegistry
from embtune.schemas.task_policy import TaskPolicy, split_policy
from embtune.services.clickstream import BatchTrainingData, ClickstreamService
from embtune.services.evaluation_sets import EvaluationSetService
from embtune.services.import_run import ImportRun
from embtune.services.live_run import LiveRun, final_progress
from embtune.services.promotion import Promotion
from embtune.services.reindex_run import ReindexRun, Written
from embtune.services.search_run import SearchRun
from embtune.services.throughput import ThroughputHistory
from embtune.sinks.base import SinkError
from embtune.storage.aliases_repo import AliasRepository
from embtune.storage.db import Database, utcnow
from embtune.storage.ids import new_id
from embtune.storage.models_repo import ModelRepository
from embtune.storage.tasks_repo import TaskRepository
from embtune.tracking import MlflowTracker, StepHistory, TrackingError, tracked
from embtune.training.hooks import TrainingHooks

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.25
_inline = threading.local()  # how many runs this thread is inside (a parent runs shards inline)

def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class TaskRunner:
    def __init__(
        self,
        db: Database,
        plugins: PluginRegistry,
        artifacts: ArtifactStore,
        *,
        heartbeat_interval_s: float,
        clickstream: ClickstreamService | None = None,
        requeue: Callable[[str, str], None] | None = None,
        cache_dir: Path | None = None,
        reindex: ReindexRun | None = None,
        imports: ImportRun | None = None,
        throughput: ThroughputHistory | None = None,
        tracker: MlflowTracker | None = None,
        checkpoint_keep: int = 2,
    ) -> None:
        self.db = db
        self.plugins = plugins
        self.artifacts = artifacts
        self.heartbeat_interval_s = heartbeat_interval_s
        self.clickstream = clickstream
        self.cache_dir = cache_dir
        self.requeue = requeue
        self.tasks = TaskRepository()
        self.models = ModelRepository()
        self.evaluation_sets = EvaluationSetService(db)
        self.promotion = Promotion(self.tasks, AliasRepository())
        self.reindex = reindex
        self.imports = imports
        self.throughput = throughput
        self.search = SearchRun(db)  # a task with `params.search` runs its trials here
        self.tracker = tracker  # None: tasks are not logged to an experiment tracker
        self.checkpoint_keep = checkpoint_keep  # complete training checkpoints a run keeps
        if reindex is not None:  # a sharded reindex runs pending shards through `handle`
            reindex.sharded.run_inline = self.handle
            reindex.sharded.send = requeue

    # -- entry point (called by the actor) ------------------------------------------------------
    def handle(self, task_id: str, message_id: str) -> None:
        task = self._claim(task_id, message_id)
        if task is None:
            log.info("message %s for task %s is stale; ignored", message_id, task_id)
            return
        live = LiveRun(task_id, message_id)
        monitor = threading.Thread(
            target=self._monitor, args=(live,), name=f"embtune-monitor-{task_id}", daemon=True
        )
        staging = None
        stopped = False
        steps = StepHistory()  # each training step's loss, for the tracker
        nested = getattr(_inline, "depth", 0)  # > 0: a shard run inline by its parent's run
        _inline.depth = nested + 1
        try:
            # inside the try: an asynchronous Shutdown landing right after the start must still
            # stop the monitor (finally) and hand the task back
            monitor.start()
            try:
                staging = self.artifacts.staging_dir(task_id, message_id)
            except OSError as exc:
                raise ArtifactStoreError(
                    f"artifact store {self.artifacts.root} is not writable: {exc}"
                ) from exc
            self._run(task, live, staging, steps)
        except TaskStopped:
            stopped = True
        except TaskRefused as exc:
            self._finish(live, Transition.refuse, detail=exc.detail)
        except TimeLimitExceeded:
            self._finish(live, Transition.fail, detail="time limit exceeded")
        except Shutdown:
            self._hand_back(live, "worker shut down during the run; re-queued")
            if nested:
                raise  # the parent's run is shut down too: it hands itself back in turn
        except Interrupt:  # dramatiq-abort's Abort: canceled and did not stop in time
            self._finish(live, Transition.fail, detail="run interrupted by an abort request")
        except (ArtifactStoreError, SinkError) as exc:
            log.error("task %s failed: %s", task_id, exc.detail)
            self._finish(live, Transition.fail, detail=exc.detail)
        except Exception as exc:
            log.exception("task %s failed", task_id)
            self._finish(live, Transition.fail, detail=_describe(exc))
        except BaseException:
            self._finish(live, Transition.fail, detail="run interrupted")
            raise
        finally:
            _inline.depth = nested
            live.stop.set()
            if monitor.ident is not None:  # started
                monitor.join(timeout=5)
            if staging is not None:
                self.artifacts.discard(staging)
            # A run's peak (gigabytes for a big catalogue) goes back to the OS, whatever the
            # allocator kept during the run: an idle worker holds only what it uses.
            allocator.release_freed_memory()
        if task.kind is TaskKind.fine_tuning:
            self._drop_checkpoints_if_over(task_id)
        if stopped:  # noted after clean-up, so "stopped" means nothing of the run is left
            log.info("task %s stopped: canceled or taken over", task_id)
            self._note(task_id, "run stopped: the task was canceled or taken over")
        self._track(task, steps)

    # -- phases --------------------------------------------------------------------------------
    def _claim(self, task_id: str, message_id: str) -> Task | None:
        with self.db.transaction() as session:
            return self.tasks.claim(session, task_id, message_id, worker_identity(), utcnow())

    def _run(
        self, task: Task, live: LiveRun, staging: Path, steps: StepHistory | None = None
    ) -> None:
        if task.kind is TaskKind.reindex:
            self._run_reindex(task, live)
            return
        if task.kind is TaskKind.reindex_shard:
            self._run_reindex_shard(task, live)
            return
        if task.kind is TaskKind.import_:
            self._run_import(task, live)
            return
        with self.db.read() as session:
            model = self.models.get(session, task.embedding_model_id)
        if model is None:
            raise TaskRefused(f"embedding model {task.embedding_model_id} no longer exists")
        try:
            plugin = self.plugins.get_trainable(model.plugin_name)
            policy, method_params = split_policy(task.params)
            params = plugin.validate_params(method_params)
            # the task's set, else the model's default; a set never changes once created
            set_id = policy.evaluation_set_id or model.evaluation_set_id
            judged = self.evaluation_sets.judged(set_id) if set_id else None
        except EmbtuneError as exc:
            raise TaskRefused(exc.detail) from None
        source = self._local_source(model)
        ctx = RunContext(
            task_id=task.id,
            model=SourceModel(id=model.id, name=model.name, source=source),
            params=params,
            output_dir=staging,
            data=self._training_data(task, plugin, live),
            report=live.report,
            should_stop=live.stop.is_set,
            cache_dir=self.cache_dir,
            judged=judged,
            rates=self._rates(source, params),
            hooks=replace(  # checkpoints outside staging: a re-queued run resumes from them
                self._training_hooks(steps),
                checkpoint_dir=self.artifacts.checkpoint_dir(task.id),
                checkpoint_keep=self.checkpoint_keep,
            ),
        )
        if policy.search is not None:
            result = self.search.run(
                plugin, ctx, method_params, policy.search,
                message_id=live.message_id, source=model,
            )
        else:
            result = plugin.run(ctx)
        ctx.check_stop()
        if isinstance(ctx.data, BatchTrainingData):  # what any method skipped: deleted items
            skipped = {"skipped_deleted_items": ctx.data.deleted_shown_results()}
            result = replace(result, metrics={**result.metrics, **skipped})
        self._complete(task, model, live, result, policy)

    def _training_hooks(self, steps: StepHistory | None) -> TrainingHooks:
        """What the task lifecycle adds to the training loop: the tracker's step recorder."""
        callbacks = self.tracker.callbacks(steps) if self.tracker and steps is not None else []
        return TrainingHooks(callbacks=tuple(callbacks))

    def _rates(self, source: str, params: Any) -> MeasuredRates | None:
        """What this host measured before for a model of this size and precision setting."""
        if self.throughput is None:
            return None
        try:
            source_dir = resolve_source(source)
        except ValueError:  # no local directory: the run refuses it
            return None
        return self.throughput.rates_for(source_dir, params, host=self.throughput.host)

    def _training_data(
        self, task: Task, plugin: FineTuningPlugin, live: LiveRun
    ) -> TrainingData | None:
        """A task without a batch trains on the open batch, released at its start and recorded
        on the task in one transaction guarded by this run still owning the task, so a restart
        retrains on the very same sessions and a cancel never orphans a released batch."""
        if not plugin.uses_clickstream or self.clickstream is None:
            return None
        return self.clickstream.data_for_run(task.id, live.message_id, task.batch_id)

    def _local_source(self, model: EmbeddingModel) -> str:
        """Plugins open local directories: a model in a remote artifact store is fetched."""
        try:
            return self.artifacts.localize(model.source)
        except ValueError as exc:
            raise TaskRefused(f"source model {model.source!r} cannot be loaded: {exc}") from None

    def _complete(
        self,
        task: Task,
        source: EmbeddingModel,
        live: LiveRun,
        result: RunResult,
        policy: TaskPolicy,
    ) -> None:
        """Register the tuned model, record the verdict, promote on it if asked, and mark the
        task done: one transaction, so none of it happens without the rest."""
        model_id = new_id()
        published = self.artifacts.publish(result.model_dir, model_id)  # ArtifactStoreError
        try:
            with live.writing, self.db.transaction() as session:
                self._flush_messages(session, live)
                self.models.insert(
                    session,
                    {
                        "id": model_id,
                        "name": result.model_name or f"{source.name} (task {task.id})",
                        "plugin_name": source.plugin_name,
                        "source": published,
                        "parent_id": source.id,
                        "task_id": task.id,
                        "metrics": result.metrics,
                        "created_at": utcnow(),
                        # an iteration is judged on its parent's set unless told otherwise
                        "evaluation_set_id": source.evaluation_set_id,
                    },
                )
                metrics = dict(result.metrics)
                settled = self.promotion.settle(session, task.id, model_id, policy, metrics)
                if self.throughput is not None:  # what this run measured, for the next estimate
                    self.throughput.record(
                        session, task_id=task.id, model_id=source.id,
                        performance=metrics.get("performance") or {},
                    )
                if settled.record is not None:
                    metrics["promotion"] = settled.record
                self._mark_done(
                    session,
                    live,
                    f"registered model {model_id}",
                    {"metrics": metrics, "result_model_id": model_id},
                    lost="task left processing before its result was registered",
                )
        except BaseException:
            self.artifacts.unpublish(published)
            raise
        if settled.reindex is not None and self.requeue is not None:
            self.requeue(*settled.reindex)  # the promotion's reindex task, after the commit

    def _run_reindex(self, task: Task, live: LiveRun) -> None:
        """Write the collection (dropped again on any way out), then switch the sink's alias
        and mark the task done in one transaction that holds the task row: a cancel lands
        before the switch or after "done", never between."""
        if self.reindex is None:
            raise TaskRefused("this worker has no vector sinks configured")
        written: Written = self.reindex.write(task, live)
        try:
            with live.writing, self.db.transaction() as session:
                self._flush_messages(session, live)
                owned = self.tasks.get(session, task.id, lock=True)
                if owned is None or not self.tasks.is_owned(session, task.id, live.message_id):
                    raise TaskStopped("task left processing before its sink was switched")
                self.reindex.switch(session, written, alias=task.params.get("alias"))
                self._mark_done(
                    session,
                    live,
                    f"wrote {written.rows} vectors into {written.collection}",
                    {"metrics": written.metrics},
                    lost="task left processing before its sink was switched",
                )
        except BaseException:
            self.reindex.undo(written)
            raise
        self.reindex.retire(written)

    def _run_reindex_shard(self, task: Task, live: LiveRun) -> None:
        """Write one shard's part of its parent's collection and mark the shard done with the
        part's receipt, guarded by this run still owning the shard."""
        if self.reindex is None:
            raise TaskRefused("this worker has no vector sinks configured")
        metrics = self.reindex.sharded.run_shard(task, live)
        with live.writing, self.db.transaction() as session:
            self._flush_messages(session, live)
            self._mark_done(
                session,
                live,
                f"wrote {metrics['items']} vectors (shard {metrics['shard'] + 1})",
                {"metrics": metrics},
                lost="shard left processing before it was marked done",
            )

    def _run_import(self, task: Task, live: LiveRun) -> None:
        """Store the file's remaining chunks (each committed on its own), then mark the task
        done with the run's figures."""
        if self.imports is None:
            raise TaskRefused("this worker cannot run imports")
        metrics = self.imports.run(task, live)
        with live.writing, self.db.transaction() as session:
            self._flush_messages(session, live)
            self._mark_done(
                session,
                live,
                f"imported {metrics['rows']} rows: {metrics['accepted']} accepted, "
                f"{metrics['duplicate']} duplicate, {metrics['conflict']} conflict, "
                f"{metrics['rejected']} rejected",
                {"metrics": metrics},
                lost="task left processing before the import was marked done",
            )

    def _mark_done(
        self, session: Session, live: LiveRun, message: str, values: dict[str, Any], *, lost: str
    ) -> None:
        """processing → done for this run, in the caller's transaction (with its result);
        TaskStopped (`lost`) when the run no longer owns the task, so the caller rolls back."""
        done = self.tasks.apply(
            session,
            live.task_id,
            Transition.complete,
            message_id=live.message_id,
            message=message,
            values={**values, "finished_at": utcnow(), "progress": final_progress(live, "done")},
        )
        if done is None:
            raise TaskStopped(lost)

    def _finish(self, live: LiveRun, transition: Transition, *, detail: str) -> None:
        """Record failed/refused — only if this run still owns the task (never over canceled)."""
        try:
            with live.writing, self.db.transaction() as session:
                if self.tasks.is_owned(session, live.task_id, live.message_id):
                    self._flush_messages(session, live)
                self.tasks.apply(
                    session,
                    live.task_id,
                    transition,
                    message_id=live.message_id,
                    message=detail,
                    values={
                        "detail": detail,
                        "finished_at": utcnow(),
                        "progress": final_progress(live, transition.target.value),
                    },
                )
        except Exception:
            log.exception("could not record %s for task %s", transition.name, live.task_id)

    def _drop_checkpoints_if_over(self, task_id: str) -> None:
        """Delete a task's training checkpoints once it is over (done, failed, refused or
        canceled) or gone; a task handed back or taken over keeps them for its next run, as
        does one whose worker died (recovery sweeps what is left of tasks that end unrun)."""
        try:
            with self.db.read() as session:
                task = self.tasks.get(session, task_id)
            if task is None or task.status.is_terminal:
                self.artifacts.discard_checkpoints(task_id)
        except Exception:  # the sweep in recovery gets them later
            log.exception("could not clean up the checkpoints of task %s", task_id)

    def _note(
        self, task_id: str, message: str, kind: TaskEventKind = TaskEventKind.run
    ) -> None:
        """Append a run event without touching the status (the run no longer owns the task)."""
        try:
            with self.db.transaction() as session:
                self.tasks.add_event(session, task_id, kind, None, None, message)
        except Exception:
            log.exception("could not record a note for task %s", task_id)

    def _track(self, task: Task, steps: StepHistory) -> None:
        """Log a fine-tuning task's finished run to the experiment tracker: after the final
        commit and the clean-up, so a slow or unreachable tracker delays this worker's next
        task, never this one's outcome; its failure becomes a warning event."""
        if self.tracker is None or task.kind is not TaskKind.fine_tuning:
            return
        try:
            with self.db.read() as session:
                final = self.tasks.get(session, task.id)
                if final is None or not tracked(final):  # handed back or taken over: running
                    return
                source = self.models.get(session, final.embedding_model_id or "")
                result = (self.models.get(session, final.result_model_id)
                          if final.result_model_id else None)
            run_id = self.tracker.log_task(final, source=source, result=result,
                                           steps=steps.points)
        except TrackingError as exc:
            problem = exc.detail
        except Exception as exc:  # a bug or a database blip: still only a warning
            problem = type(exc).__name__
            log.warning("tracking task %s failed unexpectedly", task.id, exc_info=True)
        else:
            self._note(task.id, f"logged as run {run_id} of experiment "
                                f"{self.tracker.experiment!r} ({self.tracker.name})")
            return
        message = f"could not log the run to the {self.tracker.name}: {problem}"
        log.warning("task %s: %s", task.id, message)
        self._note(task.id, message, TaskEventKind.warning)

    def _hand_back(self, live: LiveRun, message: str) -> None:
        """Give the task back to the queue under a new message id (graceful shutdown). The
        dead run's progress goes with it: until a worker claims it again, the task says it
        was re-queued, not where the old run was."""
        new_message_id = new_id()
        try:
            with self.db.transaction() as session:
                task = self.tasks.hand_back(
                    session, live.task_id, live.message_id, new_message_id, message
                )
            if task is not None and self.requeue is not None:
                self.requeue(live.task_id, new_message_id)
        except Exception:
            log.exception("could not hand task %s back", live.task_id)

    # -- monitor thread -----------------------------------------------------------------------
    def _monitor(self, live: LiveRun) -> None:
        """Heart-beat every `heartbeat_interval_s`; between beats, a cheap read of the status
        every `CANCEL_POLL_S` so a cancel stops the run within a fraction of a second."""
        # several attempts a second during an outage: the first failure and the recovery are
        # logged, not every attempt
        outage = OutageLog(log, f"heartbeat for task {live.task_id}")
        while True:
            try:
                self._heartbeat_until_stopped(live, outage)
                return
            except Interrupt as exc:
                # dramatiq delivers Shutdown/Abort/TimeLimitExceeded asynchronously by thread
                # id; one aimed at a worker thread whose id this thread now reuses is not ours,
                # and a monitor that died of it would leave the run without heartbeats
                log.warning("run monitor of task %s ignored a stray %s", live.task_id,
                            type(exc).__name__)

    def _heartbeat_until_stopped(self, live: LiveRun, outage: OutageLog) -> None:
        poll = min(CANCEL_POLL_S, self.heartbeat_interval_s)
        next_beat = time.monotonic() + self.heartbeat_interval_s
        while not live.stop.wait(poll):
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_interval_s
                    self._beat(live)
                elif not self._still_owned(live):
                    live.stop.set()
            except Exception as exc:  # a database blip must not kill the run; next beat retries
                outage.failed(exc)
            else:
                outage.ok()

    def _still_owned(self, live: LiveRun) -> bool:
        with self.db.read() as session:
            return self.tasks.is_owned(session, live.task_id, live.message_id)

    def _beat(self, live: LiveRun) -> None:
        with live.writing:
            progress, messages = live.take()
            values: dict[str, Any] = {"heartbeat_at": utcnow()}
            if progress is not None:
                values["progress"] = progress.to_dict()
            with self.db.transaction() as session:
                owned = self.tasks.update_live(session, live.task_id, live.message_id, values)
                if owned:
                    self._add_progress_events(session, live.task_id, messages)
        if not owned:
            live.stop.set()

    def _add_progress_events(self, session: Session, task_id: str, messages: list[str]) -> None:
        for message in messages:
            self.tasks.add_event(session, task_id, TaskEventKind.progress, None, None, message)

    def _flush_messages(self, session: Session, live: LiveRun) -> None:
        """Phase messages reported since the last beat (a short last phase finishes between
        beats) go into the task's history before its final status. Caller holds `writing`."""
        self._add_progress_events(session, live.task_id, live.take()[1])


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:2000] if text else type(exc).__name__

