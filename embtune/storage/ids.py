"""Time-ordered string ids: sortable like creation order, unguessable enough, storage-neutral."""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    """48 bits of milliseconds then 80 random bits, as 32 hex characters."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"
