"""One shallow exception tree; the API maps each class to one HTTP status."""

from __future__ import annotations


class EmbtuneError(Exception):
    """Base of every error embtune raises on purpose."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(EmbtuneError):
    """The named resource does not exist."""

    status_code = 404


class Conflict(EmbtuneError):
    """The request contradicts the resource's current state or an earlier request."""

    status_code = 409


class BadRequest(EmbtuneError):
    """The request is well-formed but cannot be honoured (e.g. an untrainable plugin)."""

    status_code = 400


class InvalidParams(EmbtuneError):
    """Plugin parameters failed validation; `errors` names each field."""

    status_code = 422

    def __init__(self, detail: str, errors: list[dict] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class Unavailable(EmbtuneError):
    """A backing service (database, broker) cannot be reached right now."""

    status_code = 503


class ArtifactStoreError(EmbtuneError):
    """Model files could not be written where tuned models are kept."""


class TaskRefused(EmbtuneError):
    """A plugin decided deterministically that a task cannot run; never retried."""


class TaskStopped(BaseException):
    """Raised inside a run when the task was canceled or taken away; unwinds the plugin.

    A BaseException so that a plugin's broad `except Exception` cannot swallow it.
    """
