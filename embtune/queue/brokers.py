"""The one place that knows which broker is in use: builds it, with our middleware, from settings.

Dramatiq's implicit global broker is never used: the broker is built at start-up and handed to
whoever needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
)
from dramatiq_abort import Abortable
from dramatiq_abort.backend import EventBackend
from dramatiq_abort.backends import RedisBackend, StubBackend

from embtune.config import Settings
from embtune.queue.abort_backend import DatabaseEventBackend, OutageLoggedBackend
from embtune.queue.abortable import StoppableAbortable
from embtune.queue.time_limit import RunTimeLimit
from embtune.storage.db import Database


@dataclass(frozen=True)
class BrokerBundle:
    broker: dramatiq.Broker
    abortable: Abortable
    kind: str


def _middleware(settings: Settings, abortable: Abortable) -> list[Middleware]:
    # No AgeLimit/Callbacks/Pipelines; retries are ours (heartbeat recovery), not Dramatiq's.
    return [
        RunTimeLimit(int(settings.task_time_limit_s * 1000)),  # dramatiq's needs its CLI
        ShutdownNotifications(),
        Retries(max_retries=0),
        CurrentMessage(),
        abortable,
    ]


def _abortable(backend: EventBackend, name: str) -> Abortable:
    """The abort middleware, its watcher logging an outage of `backend` once, not per second."""
    return StoppableAbortable(backend=OutageLoggedBackend(backend, name))


def _abort_redis(url: str) -> Any:
    """Redis for abort signals, with socket timeouts (the watcher's BLPOP waits 1 s): a stalled
    Redis fails a wait or a cancel's signal after seconds instead of blocking it for good."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)


def build_broker(settings: Settings, db: Database) -> BrokerBundle:
    kind = settings.broker_kind
    if kind == "redis":
        from dramatiq.brokers.redis import RedisBroker

        abort_url = settings.abort_redis_url or settings.broker_url
        abortable = _abortable(RedisBackend(client=_abort_redis(abort_url)), "redis")
        broker: dramatiq.Broker = RedisBroker(
            url=settings.broker_url,
            namespace=settings.redis_namespace,
            middleware=_middleware(settings, abortable),
            socket_connect_timeout=5,
            socket_timeout=30,
        )
    elif kind == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        if settings.abort_redis_url:
            abortable = _abortable(
                RedisBackend(client=_abort_redis(settings.abort_redis_url)), "redis"
            )
        else:
            abortable = _abortable(DatabaseEventBackend(db), "database")
        broker = RabbitmqBroker(
            url=settings.broker_url,
            confirm_delivery=True,  # a failed send must raise, so the task stays undelivered
            middleware=_middleware(settings, abortable),
        )
    else:
        abortable = StoppableAbortable(backend=StubBackend())
        broker = StubBroker(middleware=_middleware(settings, abortable))
    broker.declare_queue(settings.queue_name)
    return BrokerBundle(broker=broker, abortable=abortable, kind=kind)
