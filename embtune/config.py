"""Settings: the one place configuration enters embtune.

Built once at start-up (`Settings()`), passed down explicitly; nothing reads the environment at
import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BrokerKind = Literal["embedded", "redis", "rabbitmq"]
MIN_API_TOKEN_LENGTH = 16  # characters; a shorter EMBTUNE_API_TOKEN is refused at start-up


class Settings(BaseSettings):
    """Every knob of embtune, read from `EMBTUNE_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="EMBTUNE_", extra="ignore")

    data_dir: Path = Field(Path("./.embtune"), description="Where the SQLite file and models live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default a SQLite file in the data dir."
    )
    broker_url: str = Field(
        "embedded",
        description="`embedded` (in-process), `redis://…` or `amqp://…`.",
    )
    queue_name: str = Field(
        "fine_tuning", pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="The Dramatiq queue."
    )
    redis_namespace: str = Field("embtune", description="Key prefix for the Redis broker.")
    abort_redis_url: str | None = Field(
        None, description="Redis for abort signals; default: the broker's Redis, else the database."
    )

    worker_threads: int = Field(1, ge=1, le=64, description="Concurrent tasks per worker process.")
    embedded_worker: bool = Field(
        True, description="On the embedded broker, run a worker inside `embtune serve`."
    )
    host_name: str | None = Field(
        None,
        max_length=200,
        description="The name this machine's measured throughput (for preflight's estimates and "
        "ETAs) is kept under; default the hostname. Set it where the hostname changes with "
        "each deployment (containers).",
    )
    heartbeat_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often a run heart-beats and flushes its progress."
    )
    heartbeat_timeout_s: float = Field(
        60.0, gt=0, description="A processing task silent this long is re-queued."
    )
    max_attempts: int = Field(3, ge=1, le=100, description="Runs of a task before it fails.")
    recovery_interval_s: float = Field(
        10.0, gt=0, description="How often recovery looks for lost messages and dead workers."
    )
    undelivered_after_s: float = Field(
        2.0, ge=0, description="A pending task never sent for this long is sent again."
    )
    redeliver_after_s: float = Field(
        900.0, gt=0, description="A pending task sent but not claimed for this long is resent."
    )
    abort_grace_s: float = Field(
        15.0, ge=0, description="How long a canceled run may take to stop by itself."
    )
    task_time_limit_s: float = Field(24 * 3600.0, gt=0, description="Hard limit on one run.")

    db_connect_timeout_s: int = Field(
        5, ge=2, le=3600,
        description="PostgreSQL: give up opening a connection after this long (whole seconds, "
        "at least 2, as libpq counts); the request answers 503.",
    )
    db_statement_timeout_s: float = Field(
        30.0, gt=0,
        description="Longest one database statement may take: PostgreSQL cancels it (server "
        "side), and the client stops waiting for an answer 1 s later (a stalled server or "
        "proxy); SQLite waits this long for its write lock. Then 503.",
    )
    db_pool_timeout_s: float = Field(
        10.0, gt=0,
        description="Longest a request waits for a free pooled database connection; then 503.",
    )
    readiness_timeout_s: float = Field(
        2.0, gt=0, le=60,
        description="`/readyz` answers within this long; a check still running by then is "
        "reported as not ready.",
    )

    plugins: list[str] = Field(
        default_factory=list,
        description="Extra plugin classes as `module:Class`, besides entry points.",
    )

    max_query_length: int = Field(
        2000, ge=1, description="Longest search query a clickstream session may carry (chars)."
    )
    max_results_per_session: int = Field(
        1000, ge=1, description="Most search results one clickstream session may list."
    )
    max_events_per_push: int = Field(
        1000, ge=1, description="Most events one `POST /clickstream/session/events` may carry."
    )
    max_item_text_length: int = Field(
        100_000, ge=1, description="Longest catalogue item text accepted (chars)."
    )

    api_token: SecretStr | None = Field(
        None,
        description="When set, every endpoint but the health checks requires it (at least "
        f"{MIN_API_TOKEN_LENGTH} characters, no whitespace).",
    )

    @field_validator("api_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        """A short token is guessable, whitespace cannot survive an `Authorization` header (it
        is stripped: " " would lock everyone out) and clients cannot send non-ASCII in one, so
        such a token is refused at start-up. The message never repeats the value."""
        if value is None:
            return None
        secret = value.get_secret_value()
        if len(secret) < MIN_API_TOKEN_LENGTH or not all("!" <= c <= "~" for c in secret):
            raise ValueError(
                f"EMBTUNE_API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters of "
                "printable ASCII with no whitespace (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe())'`)"
            )
        return value

    max_body_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Larger request bodies are rejected with 413."
    )
    model_roots: list[Path] = Field(
        default_factory=list,
        description="Directories a registered model's source may live under, besides the data "
        "dir (where tuned iterations are stored).",
    )
    tune_allocator: bool = Field(
        True,
        description="In processes that run tasks (glibc Linux only): keep freed memory in the "
        "heap during a run instead of mapping and unmapping every large tensor (CPU training "
        "faster; see the README's Performance section), and give it back to the OS after each "
        "run.",
    )
    artifact_url: str | None = Field(
        None,
        description="fsspec URL where tuned models are stored (s3://bucket/models, gs://…, "
        "file:///shared/models; the scheme's fsspec package must be installed). Default: "
        "EMBTUNE_DATA_DIR/models on local or shared disk.",
    )

    qdrant_url: str | None = Field(
        None,
        description="Qdrant server for the qdrant sink (http://host:6333). Default: Qdrant's "
        "local mode under EMBTUNE_DATA_DIR/qdrant (one process: the embedded service).",
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key for EMBTUNE_QDRANT_URL.")
    sink_retention: int = Field(
        2,
        ge=0,
        le=100,
        description="Complete collections a sink keeps besides the live one, for rollback; "
        "older ones are deleted after each reindex.",
    )
    reindex_shard_items: int = Field(
        0,
        ge=0,
        le=100_000_000,
        description="Split a full reindex into shards of this many items (0: off), one queue "
        "message each, so several workers share it; a task's `shards` param overrides it.",
    )

    # -- clickstream at scale ----------------------------------------------------------------
    bulk_max_rows: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most sessions (or items) one bulk request may carry; a bigger body is a "
        "422 naming the list.",
    )
    import_chunk_rows: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="Rows an import task stores per transaction; a re-queued import resumes "
        "after the last committed chunk.",
    )
    import_roots: list[Path] = Field(
        default_factory=list,
        description="Local directories an import task may read files from, besides the data "
        "dir (fsspec URLs such as s3:// are allowed whatever this says).",
    )
    clickstream_retention_days: float = Field(
        0,
        ge=0,
        description="Released batches older than this many days are pruned (their sessions, "
        "results and events deleted) in the background; 0 keeps everything.",
    )
    retention_interval_s: float = Field(
        3600, gt=0, description="How often the background retention pass runs."
    )
    retention_chunk_sessions: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Sessions deleted per transaction by retention and erasure (bounded "
        "transactions: ingestion is never blocked for long).",
    )
    webhook_allow_private_urls: bool = Field(
        False,
        description="Let webhook endpoints point at loopback, private, link-local or otherwise "
        "internal addresses. Off by default, so the service cannot be used to probe its own "
        "network (SSRF); turn it on for receivers inside a trusted network.",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=120, description="How long one webhook delivery attempt may take."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts of one delivery before it is marked failed."
    )
    webhook_backoff_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Delay before a delivery's first retry; it doubles with every further "
        "attempt (with jitter), up to webhook_backoff_max_s.",
    )
    webhook_backoff_max_s: float = Field(
        3600.0, gt=0, description="The longest wait between two attempts of one delivery."
    )
    webhook_disable_after_failures: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Failed attempts in a row, over all of an endpoint's deliveries, after "
        "which the endpoint is disabled (re-enable it through the API).",
    )
    webhook_poll_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the webhook sender looks for new outbox messages and due "
        "deliveries.",
    )
    webhook_log_retention_days: float = Field(
        30,
        ge=0,
        description="Outbox messages older than this many days, with no delivery still "
        "pending, are deleted with their deliveries by the webhook sender (once an hour); 0 "
        "keeps the whole log.",
    )
    checkpoint_keep: int = Field(
        2,
        ge=1,
        le=100,
        description="Complete training checkpoints a running task keeps (the newest); all are "
        "deleted when the task is done, failed or canceled.",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI (a server or a `sqlite:` store; MLflow 3 opens a "
        "`file:` store only with MLFLOW_ALLOW_FILE_STORE=true): each fine-tuning task is logged "
        "as a run. Needs the `embtune[mlflow]` extra.",
    )
    mlflow_experiment: str = Field(
        "embtune", min_length=1, max_length=200, description="The MLflow experiment's name."
    )

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        schemes = ("redis://", "rediss://", "amqp://", "amqps://")
        if value != "embedded" and not value.startswith(schemes):
            raise ValueError("must be 'embedded', a redis:// URL or an amqp:// URL")
        return value

    @property
    def broker_kind(self) -> BrokerKind:
        if self.broker_url.startswith(("redis://", "rediss://")):
            return "redis"
        if self.broker_url.startswith(("amqp://", "amqps://")):
            return "rabbitmq"
        return "embedded"

    def runs_worker_in_api(self, requested: bool | None) -> bool:
        """Whether `embtune serve` runs tasks in its own process: as `--worker/--no-worker` asks,
        by default only on the embedded broker (whose queue lives in that process)."""
        if requested is not None:
            return requested
        return self.broker_kind == "embedded" and self.embedded_worker

    @property
    def resolved_host_name(self) -> str:
        import socket

        return self.host_name or socket.gethostname()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'embtune.db').resolve()}"

    @property
    def allowed_model_roots(self) -> list[Path]:
        return [self.data_dir.resolve(), *(root.resolve() for root in self.model_roots)]

    @property
    def models_dir(self) -> Path:
        return (self.data_dir / "models").resolve()

    @property
    def artifact_cache_dir(self) -> Path:
        """Local copies of models fetched from `artifact_url`."""
        return (self.data_dir / "cache" / "artifacts").resolve()
