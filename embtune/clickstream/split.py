"""Split search sessions into training and validation *by query*, so no query is on both sides.

Splitting by session id (what embtune did before) puts repeats of a popular query on both sides:
the tuned model is then judged on queries it was trained on, and the sessions of one query, which
are strongly correlated, look like independent evidence. Deciding the side by the normalised query
keeps every search of a query together, and makes the query the unit a verdict resamples.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable

from embtune.clickstream.sessions import SearchSession


def normalize_query(text: str) -> str:
    """The key two searches share when a user would call them the same query.

    NFKC folds compatibility forms (full-width letters, ligatures), `casefold` is the Unicode
    case-insensitive comparison (ß ~ ss), and whitespace runs collapse to one space.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _validation_position(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)


def split_by_query(
    sessions: Iterable[SearchSession], validation_fraction: float, seed: int
) -> tuple[list[SearchSession], list[SearchSession]]:
    """Split into (train, validation) by a seeded hash of the normalised query.

    Hashing, not shuffling, keeps a query on the same side whatever order the storage returns the
    sessions in and however many are added later. The fraction is one of *queries*, not of
    sessions: a frequent query moves all its sessions at once. Both lists come out sorted by
    session id.
    """
    if not 0.0 <= validation_fraction <= 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1], got {validation_fraction}")
    train: list[SearchSession] = []
    validation: list[SearchSession] = []
    sides: dict[str, bool] = {}
    for session in sorted(sessions, key=lambda s: s.session_id):
        key = normalize_query(session.query)
        if key not in sides:
            sides[key] = _validation_position(key, seed) < validation_fraction
        (validation if sides[key] else train).append(session)
    return train, validation


def query_relevance(
    sessions: Iterable[SearchSession],
) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Click-based evaluation inputs keyed by normalised query: ({key: query text}, {key: every
    item clicked in the query's sessions}).

    One entry per query, not per session, so a popular query is one unit of evidence (its
    sessions are not independent) and its regressions are listed once. Sessions without clicks
    (and irrelevant ones) have nothing to find, so they add nothing; the text is that of the
    query's first session by id.
    """
    queries: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for session in sorted(sessions, key=lambda s: s.session_id):
        if session.irrelevant or not session.clicks:
            continue
        key = normalize_query(session.query)
        queries.setdefault(key, session.query)
        relevant.setdefault(key, set()).update(session.clicks)
    return queries, relevant
