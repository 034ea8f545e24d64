"""`token=` query values never reach a log line, whatever the parameter's spelling."""

from __future__ import annotations

import logging

import pytest

from embtune.log_redaction import RedactTokens, redact, uvicorn_log_config


@pytest.mark.parametrize(
    "line,expected",
    [
        ("/?token=abc", "/?token=[redacted]"),
        ("GET /x?a=1&token=abc&b=2 HTTP/1.1", "GET /x?a=1&token=[redacted]&b=2 HTTP/1.1"),
        ("/x?API_TOKEN=zz", "/x?API_TOKEN=[redacted]"),
        ("/x?access_token=q%20r", "/x?access_token=[redacted]"),
        ("/?%74oken=abc", "/?%74oken=[redacted]"),  # percent-encoded name
        ("/x?tokens=1&t=2", "/x?tokens=1&t=2"),
    ],
)
def test_token_query_values_are_redacted(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_rewrites_uvicorns_access_arguments_and_keeps_the_record() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", "/?token=abc", "1.1", 303), None)
    assert RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:1 - "GET /?token=[redacted] HTTP/1.1" 303'


def test_every_uvicorn_handler_gets_the_filter() -> None:
    config = uvicorn_log_config()
    assert config["handlers"] and all(
        "redact_tokens" in handler["filters"] for handler in config["handlers"].values()
    )
