"""The checks and the fingerprint a session and its events go through, wherever they come
from: one `POST /clickstream/session`, an events push, or a row of a bulk body or import file.

Kept apart from the services so the single and bulk paths cannot drift: a session refused by
one is refused by the other with the same field named, and a session posted by one is a
duplicate (not a conflict) when the other receives it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from embtune.config import Settings
from embtune.domain.fingerprint import request_fingerprint
from embtune.services.field_errors import field_error, too_long_text, too_many
from embtune.storage.clickstream_repo import CLICK


def session_errors(
    settings: Settings, search_query: str, search_results: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The settings' bounds on a session, and no object shown twice."""
    errors: list[dict[str, Any]] = []
    if len(search_query) > settings.max_query_length:
        errors.append(too_long_text(["search_query"], settings.max_query_length))
    if len(search_results) > settings.max_results_per_session:
        errors.append(
            too_many(["search_results"], settings.max_results_per_session, len(search_results))
        )
    positions: dict[str, int] = {}
    for index, result in enumerate(search_results):
        first = positions.setdefault(result["object_id"], index)
        if first != index:
            errors.append(
                field_error(
                    ["search_results", index, "object_id"],
                    f"duplicate object_id {result['object_id']!r} (also at index {first})",
                    "value_error",
                )
            )
    return errors


def stored_results(search_results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Results as stored: the rank defaults to the position + 1, the position breaks ties."""
    return [
        {
            "object_id": result["object_id"],
            "rank": result.get("rank") or index + 1,
            "position": index,
            "meta": result.get("meta"),
        }
        for index, result in enumerate(search_results)
    ]


def session_fingerprint(
    search_query: str,
    results: Sequence[Mapping[str, Any]],
    user_id: str | None,
    created_at: datetime | None,
    search_meta: dict[str, Any] | None,
) -> str:
    """What makes "the same session again": its body, with the results as stored. Events and
    the irrelevant mark are not part of it: they may follow in later requests."""
    return request_fingerprint(
        {
            "search_query": search_query,
            "search_results": [
                {"object_id": r["object_id"], "rank": r["rank"], "meta": r["meta"]}
                for r in results
            ],
            "user_id": user_id,
            "created_at": created_at.astimezone(UTC).isoformat() if created_at else None,
            "search_meta": search_meta,
        }
    )


def event_key(event: Mapping[str, Any]) -> tuple[str, str]:
    """What an event id stands for; the same id with another key is another event."""
    return event["object_id"], event.get("event_type") or CLICK


def repeated_event_errors(
    events: Sequence[Mapping[str, Any]], locs: Sequence[Sequence[str | int]] | None = None
) -> tuple[dict[str, Mapping[str, Any]], list[dict[str, Any]]]:
    """Events by id (the first of each) and an error for each id repeated with another
    content; a repeat with the same content is just a repeat. `locs`: where each event was
    given (default `events.<index>`)."""
    unique: dict[str, Mapping[str, Any]] = {}
    errors: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        earlier = unique.setdefault(event["event_id"], event)
        if earlier is not event and event_key(earlier) != event_key(event):
            errors.append(
                field_error(
                    [*(locs[index] if locs else ("events", index)), "event_id"],
                    f"event_id {event['event_id']!r} repeated with different content",
                    "value_error",
                )
            )
    return unique, errors
