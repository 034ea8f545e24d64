"""The webhook sender: fans outbox messages out into deliveries and makes their attempts.

It runs wherever a worker runs (`Runtime.start_worker`: `embtune worker` and the API's embedded
worker), as a thread that wakes every `webhook_poll_interval_s`. Nothing is sent from a request
or from a run's transaction: the state change only wrote its outbox row, and this loop sends
after that row committed. Several senders may run at once; the repository's compare-and-sets
(fan-out once, one lease per attempt) keep them from doing the same work.

Delivery is at least once: a sender that dies after the receiver answered but before the
outcome was recorded sends that attempt again once its lease expires. Receivers de-duplicate on
`webhook-id`, which is the message's id and the same for every attempt and redelivery.

What is logged: endpoint and delivery ids, status codes, error classes. Never a payload, a
secret or a signature.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from embtune.config import Settings
from embtune.domain.webhooks import DueDelivery, RetrySchedule, body_bytes, signed_headers
from embtune.errors import Unavailable
from embtune.outage_log import OutageLog
from embtune.services.webhook_destinations import (
    DestinationRefused,
    Resolver,
    check_destination,
    resolve,
)
from embtune.storage.db import Database, utcnow
from embtune.storage.webhooks_repo import WebhookRepository

log = logging.getLogger(__name__)

# messages fanned out and deliveries claimed per transaction
FAN_OUT_BATCH = 100
CLAIM_BATCH = 10
# a claim outlives the batch's sends by this much before another sender may take it over
LEASE_MARGIN_S = 30.0
# the log's retention runs this often, deleting this many messages per transaction
PRUNE_EVERY_S = 3600.0
PRUNE_BATCH = 500


@dataclass
class SendReport:
    fanned_out: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    pruned: int = 0


@dataclass(frozen=True)
class AttemptOutcome:
    delivered: bool
    status_code: int | None
    error: str | None


class WebhookSender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        resolver: Resolver = resolve,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.db = db
        self.allow_private = settings.webhook_allow_private_urls
        self.timeout_s = settings.webhook_timeout_s
        self.disable_after = settings.webhook_disable_after_failures
        self.schedule = RetrySchedule(
            base_s=settings.webhook_backoff_s,
            max_s=settings.webhook_backoff_max_s,
            max_attempts=settings.webhook_max_attempts,
        )
        self.resolver = resolver
        self.retention_days = settings.webhook_log_retention_days
        self._pruned_at: float | None = None  # monotonic time of the last retention pass
        self.repo = WebhookRepository()
        # no redirects: a receiver could otherwise bounce the request to an internal address
        self.http = httpx.Client(
            timeout=self.timeout_s, follow_redirects=False, transport=transport,
            trust_env=False,
        )

    def close(self) -> None:
        self.http.close()

    def run_once(self, should_stop: Callable[[], bool] = lambda: False) -> SendReport:
        """Fan out what the outbox holds, then send every due delivery (batch after batch,
        asking `should_stop` between sends)."""
        report = SendReport()
        with self.db.read() as session:
            undispatched = self.repo.has_undispatched(session)
        while undispatched:
            with self.db.transaction() as session:
                created = self.repo.dispatch_pending(session, utcnow(), FAN_OUT_BATCH)
                undispatched = self.repo.has_undispatched(session)
            report.fanned_out += created
        while not should_stop():
            now = utcnow()
            with self.db.read() as session:
                if not self.repo.has_due(session, now):
                    break
            lease = now + timedelta(seconds=CLAIM_BATCH * (self.timeout_s + 1) + LEASE_MARGIN_S)
            with self.db.transaction() as session:
                claimed = self.repo.claim_due(
                    session, now=now, lease_until=lease, limit=CLAIM_BATCH
                )
            self._send_batch(claimed, report, should_stop)
        if self._prune_due():
            report.pruned = self.prune(utcnow() - timedelta(days=self.retention_days))
        return report

    def _prune_due(self) -> bool:
        if self.retention_days <= 0:
            return False
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return False
        self._pruned_at = now
        return True

    def prune(self, cutoff: datetime) -> int:
        """Delete the log older than `cutoff` (messages no delivery still waits for, with
        their deliveries), in bounded transactions; how many messages went."""
        pruned = 0
        while True:
            with self.db.transaction() as session:
                deleted = self.repo.prune(session, cutoff, PRUNE_BATCH)
            pruned += deleted
            if deleted < PRUNE_BATCH:
                return pruned

    def _send_batch(
        self, claimed: list[DueDelivery], report: SendReport, should_stop: Callable[[], bool]
    ) -> None:
        """Attempt each claimed delivery; what is left when the sender stops, or belongs to
        an endpoint disabled meanwhile, is released (due again, not counted as an attempt)."""
        disabled: set[str] = set()
        unsent: list[DueDelivery] = []
        for due in claimed:
            if should_stop() or due.endpoint_id in disabled:
                unsent.append(due)
                continue
            delivered, disabled_now = self._attempt(due)
            if delivered:
                report.delivered += 1
            else:
                report.failed_attempts += 1
            if disabled_now:
                disabled.add(due.endpoint_id)
        if unsent:
            with self.db.transaction() as session:
                self.repo.release(session, unsent)

    def _attempt(self, due: DueDelivery) -> tuple[bool, bool]:
        """One attempt, recorded; (delivered, whether it disabled the endpoint)."""
        outcome = self.send(due)
        now = utcnow()
        retry_at: datetime | None = None
        if not outcome.delivered and not self.schedule.gives_up_after(due.attempt):
            retry_at = now + timedelta(seconds=self.schedule.delay_after(due.attempt))
        with self.db.transaction() as session:
            disabled = self.repo.record_attempt(
                session, due, now=now, delivered=outcome.delivered,
                status_code=outcome.status_code, error=outcome.error, retry_at=retry_at,
                disable_after=self.disable_after,
            )
        if not outcome.delivered:
            log.info("webhook delivery %s to endpoint %s: attempt %d failed (%s)%s", due.id,
                     due.endpoint_id, due.attempt, outcome.error,
                     "" if retry_at else "; giving up")
        if disabled:
            log.warning("webhook endpoint %s disabled after %d failed attempts in a row",
                        due.endpoint_id, self.disable_after)
        return outcome.delivered, disabled

    def send(self, due: DueDelivery) -> AttemptOutcome:
        """One signed POST; never raises for what the receiver or the network does."""
        try:
            destination = check_destination(
                due.url, allow_private=self.allow_private, resolver=self.resolver
            )
        except DestinationRefused as exc:
            return AttemptOutcome(False, None, f"refused: {exc}")
        body = body_bytes(due.payload)
        headers = signed_headers(due.secret, due.message_id, int(time.time()), body)
        headers["user-agent"] = "embtune-webhooks"
        extensions = {}
        if destination.address is not None:  # connect to the address checked, by its name
            headers["host"] = destination.host_header()
            extensions["sni_hostname"] = destination.host
        try:
            response = self.http.post(
                destination.pinned_url(), content=body, headers=headers,
                extensions=extensions,
            )
        except httpx.TimeoutException:
            return AttemptOutcome(False, None, f"timed out after {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return AttemptOutcome(False, None, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return AttemptOutcome(True, response.status_code, None)
        reason = "redirects are not followed" if response.is_redirect else response.reason_phrase
        return AttemptOutcome(False, response.status_code,
                              f"HTTP {response.status_code} {reason}".strip())


class PeriodicWebhooks:
    """A daemon thread calling `WebhookSender.run_once` every `interval_s` until stopped (the
    shape of `services.recovery.PeriodicRecovery`).

    A database outage is logged at INFO: the recovery loop, which runs in every process that
    runs this one, already reports it at WARNING, once. Any other failure is a WARNING."""

    def __init__(self, sender: WebhookSender, interval_s: float) -> None:
        self.sender = sender
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embtune-webhooks", daemon=True)
        self._outage = OutageLog(log, "webhook pass (database)", level=logging.INFO)
        self._failure = OutageLog(log, "webhook pass")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Waits for an attempt in flight (at most `webhook_timeout_s`), then closes the HTTP
        client."""
        self._stop.set()
        self._thread.join(timeout=self.sender.timeout_s + 10)
        self.sender.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sender.run_once(should_stop=self._stop.is_set)
            except Unavailable as exc:
                self._outage.failed(exc)
            except Exception as exc:  # never kills the thread: the next pass retries
                self._failure.failed(exc)
            else:
                self._outage.ok()
                self._failure.ok()
            if self._stop.wait(self.interval_s):
                return
