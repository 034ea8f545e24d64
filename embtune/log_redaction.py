"""Keeps secrets passed in URLs out of the server's logs.

The dashboard once signed in with `/?token=<API token>`, and uvicorn's access log writes every
request line verbatim. Sign-in is a POST form now, but an old bookmark (or a script) may still
send the token in a query string: `embtune serve` installs this filter on uvicorn's log
handlers so such a value is never written.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

# A query parameter: its name, then its value up to the next parameter, space or quote.
_PARAM = re.compile(r"((?:^|[?&;])([^=&;?\s\"]+)=)([^&;\s\"]*)")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with the value of every `…token` query parameter (`token`, `api_token`,
    `access_token`, any case, percent-encoded names too) replaced by `[redacted]`."""

    def hide(match: re.Match[str]) -> str:
        name = unquote_plus(match.group(2)).lower()
        return match.group(1) + REDACTED if name.endswith("token") else match.group(0)

    return _PARAM.sub(hide, text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message and string arguments (uvicorn's access line keeps the path
    and query among its arguments); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with `RedactTokens` on each of its handlers (a
    plain dict, so it also reaches the worker processes of `--processes N`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": f"{__name__}.RedactTokens"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_tokens")
    return config
