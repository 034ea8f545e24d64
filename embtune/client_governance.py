"""The client's data-governance calls, as a mixin of `embtune.client.Client`: a retention pass
now, erasing one user's sessions, reading the audit trail. Written against `Client`'s plumbing
(`_json`, `_page`), like `client_reindex.py`.

    with Client() as api:
        erased = api.erase_user("u-123")          # {"sessions": 4, "results": 40, "events": 5}
        trail = api.list_audit(action="erase_user")
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from embtune.schemas.retention import AuditEventPublic, RetentionRunPublic, UserErasedPublic


class GovernanceClientMixin:
    """Retention, erasure and the audit trail."""

    def run_retention(self) -> RetentionRunPublic:
        """Prune now what retention would prune in its next background pass."""
        return self._json(  # type: ignore[attr-defined, no-any-return]
            "POST", "/api/v1/clickstream/retention/run", RetentionRunPublic
        )

    def erase_user(self, user_id: str) -> UserErasedPublic:
        """Delete every session of the user with its results and events; zeros when there
        were none (safe to repeat)."""
        return self._json(  # type: ignore[attr-defined, no-any-return]
            "DELETE", f"/api/v1/clickstream/users/{quote(user_id, safe='')}", UserErasedPublic
        )

    def list_audit(
        self, offset: int = 0, limit: int = 20, action: str | None = None
    ) -> Any:
        """`Page[AuditEventPublic]`, newest first."""
        return self._page(  # type: ignore[attr-defined]
            "/api/v1/audit", AuditEventPublic,
            {"offset": offset, "limit": limit, "action": action},
        )
