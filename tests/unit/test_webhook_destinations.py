"""Where the sender may connect: every address a name resolves to must be public (unless
private receivers are allowed), checked again before each attempt, and the connection goes to
the address checked. Resolvers here are plain functions standing in for DNS answers."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from embtune.config import Settings
from embtune.domain.webhooks import DueDelivery
from embtune.services.webhook_destinations import (
    Address,
    DestinationRefused,
    Resolver,
    check_destination,
)
from embtune.services.webhook_sender import WebhookSender
from embtune.storage.db import Database, make_engine


def answers(*addresses: str) -> Resolver:
    def resolver(_host: str, _port: int) -> list[Address]:
        return [ipaddress.ip_address(a) for a in addresses]

    return resolver


def test_a_name_resolving_to_public_addresses_is_pinned_to_the_first() -> None:
    found = check_destination("https://hooks.example.com:8443/in?a=1", allow_private=False,
                              resolver=answers("93.184.216.34", "93.184.216.35"))
    assert found.pinned_url() == "https://93.184.216.34:8443/in?a=1"
    assert found.host_header() == "hooks.example.com:8443"
    assert found.host == "hooks.example.com"
    v6 = check_destination("http://hooks.example.com/", allow_private=False,
                           resolver=answers("2606:2800:220:1:248:1893:25c8:1946"))
    assert v6.pinned_url() == "http://[2606:2800:220:1:248:1893:25c8:1946]/"


def test_one_private_answer_among_public_ones_is_refused() -> None:
    with pytest.raises(DestinationRefused, match="EMBTUNE_WEBHOOK_ALLOW_PRIVATE_URLS"):
        check_destination("http://rebind.example.com/", allow_private=False,
                          resolver=answers("93.184.216.34", "127.0.0.1"))


def test_a_name_that_does_not_resolve_is_accepted_at_registration_only() -> None:
    later = check_destination("http://not-yet.example.com/", allow_private=False,
                              resolver=answers(), must_resolve=False)
    assert later.address is None
    with pytest.raises(DestinationRefused, match="does not resolve"):
        check_destination("http://not-yet.example.com/", allow_private=False,
                          resolver=answers())


def test_allowed_private_receivers_are_reached_by_name_without_a_lookup() -> None:
    def no_lookup(_host: str, _port: int) -> list[Address]:
        raise AssertionError("no lookup when private receivers are allowed")

    found = check_destination("http://receiver.internal:9000/x", allow_private=True,
                              resolver=no_lookup)
    assert found.address is None and found.pinned_url() == "http://receiver.internal:9000/x"


def test_the_sender_refuses_a_name_that_now_resolves_to_loopback(tmp_path: Path) -> None:
    """DNS rebinding: registered while public, the name now answers 127.0.0.1; the attempt
    fails without a connection and says why."""
    db = Database(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    sender = WebhookSender(db, Settings(data_dir=tmp_path), resolver=answers("127.0.0.1"))
    try:
        outcome = sender.send(DueDelivery(
            id="d1", endpoint_id="e1", url="http://hooks.example.com/in", secret="whsec_x",
            message_id="msg_1", payload={"type": "task.done"}, attempt=1,
        ))
    finally:
        sender.close()
        db.dispose()
    assert not outcome.delivered and outcome.status_code is None
    assert outcome.error is not None and "non-public address (127.0.0.1)" in outcome.error
