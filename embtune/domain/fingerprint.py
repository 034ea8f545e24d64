"""Request fingerprints: how "the same request again" is recognised for idempotent creates."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_fingerprint(body: dict[str, Any]) -> str:
    """Order-independent hash of a JSON-able body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
