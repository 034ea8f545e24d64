"""Sending and aborting task messages. The message id we store is the id of the message sent."""

from __future__ import annotations

import logging
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import CurrentMessage
from dramatiq_abort.middleware import AbortMode

from embtune.queue.brokers import BrokerBundle

log = logging.getLogger(__name__)

ACTOR_NAME = "embtune_run_fine_tuning_task"


class Dispatcher:
    def __init__(self, bundle: BrokerBundle, queue_name: str) -> None:
        self.bundle = bundle
        self.queue_name = queue_name

    def send(self, task_id: str, message_id: str) -> None:
        """Enqueue one run of `task_id` as message `message_id`; raises when the broker fails."""
        message: dramatiq.Message = dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=ACTOR_NAME,
            args=(task_id,),
            kwargs={},
            options={},
            message_id=message_id,
        )
        self.bundle.broker.enqueue(message)

    def abort(self, message_id: str, grace_s: float) -> None:
        """Skip the message if still queued; interrupt the run if it ignores the cooperative
        stop for `grace_s` seconds."""
        self.bundle.abortable.abort(
            message_id, mode=AbortMode.ABORT, abort_timeout=int(grace_s * 1000)
        )

    def ping(self) -> None:
        """Raise when the broker cannot be reached (readiness)."""
        broker = self.bundle.broker
        if self.bundle.kind == "redis":
            broker.client.ping()  # type: ignore[attr-defined]
        elif self.bundle.kind == "rabbitmq":
            import pika

            params = broker.parameters  # type: ignore[attr-defined]
            pika.BlockingConnection(params).close()


def declare_actor(
    bundle: BrokerBundle, queue_name: str, handle: Callable[[str, str], None], time_limit_ms: int
) -> dramatiq.Actor:
    """Bind the (thin) actor to this broker; the lifecycle lives in `TaskRunner.handle`."""

    def run_fine_tuning_task(task_id: str) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None, "CurrentMessage middleware is required"
        handle(task_id, message.message_id)

    return dramatiq.Actor(
        run_fine_tuning_task,
        broker=bundle.broker,
        actor_name=ACTOR_NAME,
        queue_name=queue_name,
        priority=0,
        options={
            "max_retries": 0,
            "time_limit": time_limit_ms,
            "abortable": True,
            "notify_shutdown": True,
        },
    )
