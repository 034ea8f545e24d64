"""Webhooks' pure parts: Standard Webhooks signing (against the spec's published example and an
independent verifier), secrets, the retry schedule, URL and address rules, event payloads."""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime

import pytest

from embtune.domain.aliases import AliasAction, AliasChange
from embtune.domain.tasks import Progress, Task, TaskKind, TaskStatus
from embtune.domain.webhooks import (
    RetrySchedule,
    WebhookEvent,
    alias_event,
    body_bytes,
    envelope,
    is_public_address,
    new_secret,
    secret_problem,
    sign,
    signed_headers,
    task_events,
    url_problem,
)
from tests.support.webhook_receiver import verify

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_the_signature_matches_the_standard_webhooks_published_example() -> None:
    # the example of the Standard Webhooks spec and its reference libraries
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330, b'{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_signed_headers_verify_with_an_independent_verifier_and_only_unchanged() -> None:
    secret = new_secret()
    body = body_bytes(envelope(WebhookEvent.task_done, {"id": "t1"}, NOW))
    headers = signed_headers(secret, "msg_1", int(time.time()), body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body.replace(b"t1", b"t2"))
    assert not verify(new_secret(), headers, body)
    assert not verify(secret, {**headers, "webhook-id": "msg_2"}, body)
    stale = signed_headers(secret, "msg_1", int(time.time()) - 3600, body)
    assert not verify(secret, stale, body)


def test_the_body_is_the_same_bytes_every_time() -> None:
    payload = {"type": "task.done", "data": {"b": 1, "a": [1, 2]}, "timestamp": "x"}
    assert body_bytes(payload) == body_bytes(dict(reversed(payload.items())))


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and secret_problem(secret) is None
    assert secret != new_secret()
    assert "whsec_" in (secret_problem("abc") or "")
    assert "base64" in (secret_problem("whsec_???") or "")
    assert "24 to 64 bytes" in (secret_problem("whsec_c2hvcnQ=") or "")


def test_the_backoff_doubles_within_its_jitter_and_stops_at_the_cap() -> None:
    schedule = RetrySchedule(base_s=5, max_s=60, max_attempts=4)
    assert [schedule.delay_after(n, rand=lambda: 0.5) for n in (1, 2, 3, 4, 5)] == [
        5, 10, 20, 40, 60
    ]
    assert schedule.delay_after(2, rand=lambda: 0.0) == 7.5
    assert schedule.delay_after(2, rand=lambda: 1.0) == 12.5
    assert schedule.delay_after(200, rand=lambda: 1.0) == 60
    assert [schedule.gives_up_after(n) for n in (1, 3, 4, 5)] == [False, False, True, True]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/in?x=1", None),
        ("http://93.184.216.34:8080/", None),
        ("ftp://hooks.example.com/", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("https://", "must name a host"),
        ("https://a:b@hooks.example.com/", "credentials"),
        ("https://a@hooks.example.com/", "credentials"),
        ("https://hooks.example.com:0x50/", "valid URL"),
        ("https://hooks.example.com/a b", "whitespace"),
        ("https://hooks.example.com/" + "a" * 2000, "at most 2000"),
    ],
)
def test_url_rules(url: str, problem: str | None) -> None:
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in (found or "")), found


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.216.34", True),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def _task(status: TaskStatus, kind: TaskKind = TaskKind.fine_tuning, **extra: object) -> Task:
    values: dict = {
        "id": "t1", "status": status, "embedding_model_id": "m1", "idempotency_key": None,
        "batch_id": None, "params": {}, "metadata": {}, "message_id": "b1",
        "progress": Progress(), "metrics": None, "result_model_id": None, "detail": None,
        "attempts": 1, "created_at": NOW, "updated_at": NOW, "started_at": None,
        "finished_at": None, "heartbeat_at": None, "dispatched_at": None, "worker_id": None,
        "kind": kind, **extra,
    }
    return Task(**values)


def test_each_announced_status_has_its_event_and_pending_has_none() -> None:
    assert task_events(_task(TaskStatus.pending)) == []
    for status, event in [(TaskStatus.processing, "task.processing"),
                          (TaskStatus.done, "task.done"), (TaskStatus.failed, "task.failed"),
                          (TaskStatus.refused, "task.refused"),
                          (TaskStatus.canceled, "task.canceled")]:
        [(found, data)] = task_events(_task(status))
        assert found.value == event and data["status"] == status.value


def test_a_done_task_reports_its_verdict_and_a_failed_one_its_detail() -> None:
    done = _task(TaskStatus.done, metrics={"verdict": {"verdict": "better", "reason": "x"}},
                 result_model_id="m2")
    [(_, data)] = task_events(done)
    assert (data["verdict"], data["result_model_id"]) == ("better", "m2")
    [(_, failed)] = task_events(_task(TaskStatus.failed, detail="out of memory"))
    assert failed["detail"] == "out of memory" and failed["verdict"] is None


def test_a_done_reindex_also_announces_its_completion_and_a_shard_nothing() -> None:
    reindex = _task(
        TaskStatus.done, TaskKind.reindex, params={"alias": "production", "sink": {"x": 1}},
        metrics={"collection": "c_2", "written": 10, "mode": "full",
                 "sink": {"type": "qdrant", "name": "shop", "key": "k",
                          "url": "http://qdrant.internal"}},
    )
    events = task_events(reindex)
    assert [e.value for e, _ in events] == ["task.done", "reindex.completed"]
    assert events[1][1] == {
        "task_id": "t1", "model_id": "m1", "alias": "production",
        "sink": {"type": "qdrant", "name": "shop"}, "collection": "c_2", "written": 10,
        "mode": "full",
    }
    assert [e.value for e, _ in task_events(_task(TaskStatus.failed, TaskKind.reindex))] == [
        "task.failed"
    ]
    assert task_events(_task(TaskStatus.done, TaskKind.reindex_shard)) == []


def test_an_alias_change_names_the_model_before_and_who_moved_it() -> None:
    change = AliasChange(alias="production", version=3, action=AliasAction.rollback,
                         model_id="m1", previous_model_id="m2", actor="user:token",
                         reason="bad", created_at=NOW)
    event, data = alias_event(change)
    assert event is WebhookEvent.alias_updated
    assert data == {"name": "production", "model_id": "m1", "previous": "m2", "version": 3,
                    "action": "rollback", "changed_by": "user:token", "reason": "bad"}
