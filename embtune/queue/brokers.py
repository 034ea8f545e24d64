"""The one place that knows which broker is in use: builds it, with our middleware, from settings.

Dramatiq's implicit global broker is never used: the broker is built at start-up and handed to
whoever needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
)
from dramatiq_abort import Abortable
from dramatiq_abort.backends import RedisBackend, StubBackend

from embtune.config import Settings
from embtune.queue.abort_backend import DatabaseEventBackend
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


def build_broker(settings: Settings, db: Database) -> BrokerBundle:
    kind = settings.broker_kind
    if kind == "redis":
        import redis
        from dramatiq.brokers.redis import RedisBroker

        abort_url = settings.abort_redis_url or settings.broker_url
        backend = RedisBackend(client=redis.Redis.from_url(abort_url))
        abortable = Abortable(backend=backend)
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
            import redis

            abort_backend = RedisBackend(client=redis.Redis.from_url(settings.abort_redis_url))
            abortable = Abortable(backend=abort_backend)
        else:
            abortable = Abortable(backend=DatabaseEventBackend(db))
        broker = RabbitmqBroker(
            url=settings.broker_url,
            confirm_delivery=True,  # a failed send must raise, so the task stays undelivered
            middleware=_middleware(settings, abortable),
        )
    else:
        abortable = Abortable(backend=StubBackend())
        broker = StubBroker(middleware=_middleware(settings, abortable))
    broker.declare_queue(settings.queue_name)
    return BrokerBundle(broker=broker, abortable=abortable, kind=kind)
