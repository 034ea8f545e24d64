"""Real backends for tests: a fresh database and an isolated queue per test, on each of
SQLite + embedded broker, PostgreSQL + Redis and PostgreSQL + RabbitMQ."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

PG_ADMIN = os.environ.get("EMBTUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EMBTUNE_TEST_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("EMBTUNE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")

TEST_PLUGINS = [
    "tests.support.plugins:SleepyPlugin",
    "tests.support.plugins:ClickCounterPlugin",
]
ALL_BACKENDS = ("sqlite-embedded", "postgres-redis", "postgres-rabbitmq")


def selected_backends() -> list[str]:
    """`EMBTUNE_TEST_BACKENDS=sqlite-embedded` narrows a local run; CI runs all three."""
    raw = os.environ.get("EMBTUNE_TEST_BACKENDS")
    return [b for b in ALL_BACKENDS if not raw or b in raw.split(",")]


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    broker_url: str
    queue_name: str
    namespace: str

    @property
    def database(self) -> str:
        return self.name.split("-")[0]

    @property
    def broker(self) -> str:
        return self.name.split("-")[1]

    def env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        """Environment for a subprocess (`embtune serve` / `embtune worker`) on this backend."""
        return {
            "EMBTUNE_DATA_DIR": str(data_dir),
            "EMBTUNE_DATABASE_URL": self.database_url,
            "EMBTUNE_BROKER_URL": self.broker_url,
            "EMBTUNE_QUEUE_NAME": self.queue_name,
            "EMBTUNE_REDIS_NAMESPACE": self.namespace,
            "EMBTUNE_PLUGINS": json.dumps(TEST_PLUGINS),
            **extra,
        }


def pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{dbname}".replace("postgresql://", "postgresql+psycopg://", 1)


def create_pg_database() -> str:
    name = f"embtune_t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cleanup_broker(backend: Backend) -> None:
    if backend.broker == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{backend.namespace}*"))
        if keys:
            client.delete(*keys)
    elif backend.broker == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = conn.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(backend.queue_name + suffix)
        conn.close()


@contextmanager
def provision(name: str, tmp_path: Path) -> Iterator[Backend]:
    token = secrets.token_hex(4)
    queue = f"t_{token}"
    namespace = f"embtune-test-{token}"
    pg_name = None
    if name.startswith("postgres"):
        pg_name = create_pg_database()
        database_url = pg_url(pg_name)
    else:
        database_url = f"sqlite:///{tmp_path / 'embtune.db'}"
    broker_url = {"embedded": "embedded", "redis": REDIS_URL, "rabbitmq": AMQP_URL}[
        name.split("-")[1]
    ]
    backend = Backend(name, database_url, broker_url, queue, namespace)
    try:
        yield backend
    finally:
        try:
            _cleanup_broker(backend)
        finally:
            if pg_name:
                drop_pg_database(pg_name)
