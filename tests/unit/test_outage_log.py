"""OutageLog: one traceback when an outage starts, silence while it lasts, one line when the
failure changes or the outage ends (or, in a long one, a reminder now and then)."""

from __future__ import annotations

import logging

import pytest

from embtune.errors import Unavailable
from embtune.outage_log import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, bool]]:
    out = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    caplog.clear()
    return out


def raised(exc: Exception) -> Exception:
    try:
        raise exc
    except Exception as caught:
        return caught


def test_an_outage_logs_its_start_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = OutageLog(logging.getLogger("t"), "heartbeat", clock=clock)
    outage.ok()
    assert lines(caplog) == []  # healthy: nothing to say
    for _ in range(24):
        outage.failed(raised(Unavailable("database unavailable: connection refused")))
        clock.now += 0.25
    assert lines(caplog) == [(
        "heartbeat failed, retrying (repeats are not logged until it works): "
        "Unavailable: database unavailable: connection refused", True,
    )]
    assert outage.failing
    clock.now += 0.1
    outage.ok()
    outage.ok()
    assert lines(caplog) == [("heartbeat back after 6.1 s (24 attempts failed)", False)]
    assert not outage.failing
    outage.failed(raised(Unavailable("again")))  # a new outage starts afresh
    assert lines(caplog)[0][1] is True


def test_a_new_kind_of_failure_is_one_line_and_a_long_outage_reminds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    outage = OutageLog(logging.getLogger("t"), "recovery pass", remind_every_s=60, clock=clock)
    outage.failed(raised(Unavailable("database unavailable")))
    outage.failed(raised(ConnectionError("broker refused")))
    outage.failed(raised(ConnectionError("broker refused")))
    outage.failed(raised(Unavailable("database unavailable")))  # seen before: no traceback
    assert [(m.split(":")[0], tb) for m, tb in lines(caplog)] == [
        ("recovery pass failed, retrying (repeats are not logged until it works)", True),
        ("recovery pass still failing, now with ConnectionError", True),
        ("recovery pass still failing, now with Unavailable", False),
    ]
    for _ in range(130):  # two minutes of one attempt a second: two reminders
        clock.now += 1
        outage.failed(raised(Unavailable("database unavailable")))
    assert lines(caplog) == [
        ("recovery pass still failing after 60 s (64 attempts): "
         "Unavailable: database unavailable", False),
        ("recovery pass still failing after 120 s (124 attempts): "
         "Unavailable: database unavailable", False),
    ]
    outage.ok()
    assert lines(caplog) == [("recovery pass back after 130.0 s (134 attempts failed)", False)]
