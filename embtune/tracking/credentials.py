"""Credentials out of anything a tracker's failure shows: an MLflow error quotes the request
URL, user and password included, and it ends up in a task event and the worker's log."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/\s:@]*):[^@/\s]*@")


def hide_credentials(text: str, uri: str | None = None) -> str:
    """`text` with the password of every `scheme://user:password@` URL masked, and the
    configured URI's password masked wherever else it appears (an error may quote it)."""
    text = _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)
    password = urlsplit(uri).password if uri else None
    if password:
        for form in {password, unquote(password)}:
            text = text.replace(form, "***")
    return text
