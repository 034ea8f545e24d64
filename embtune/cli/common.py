"""What every client command shares: the `--url`/`--json` options, the consoles, one way to fail,
and the `key=value` parameter syntax."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from embtune.client import ApiError, Client, format_detail

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="EMBTUNE_URL", help="The embtune server.", show_envvar=True),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the raw JSON instead of a table (for scripts).")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="A method parameter; repeatable. Values are read as JSON when they parse "
        "(3, 0.5, true, null, [1, 2]), else as text.",
    ),
]
ParamsJsonOption = Annotated[
    str | None,
    typer.Option("--params-json", metavar="JSON", help="All parameters as one JSON object; "
                 "--param values override its keys."),
]

err_console = Console(stderr=True)


def out_console() -> Console:
    """stdout, built per command so it follows redirection; piped output is not wrapped at 80
    columns, so ids stay whole for `grep` and `cut`."""
    return Console(width=None if sys.stdout.isatty() else 200)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr (soft_wrap: however narrow the terminal) and a non-zero exit."""
    line = " ".join(message.split())  # a server's multi-line answer still makes one line
    err_console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def usage_error(message: str) -> NoReturn:
    fail(message, code=2)


@contextmanager
def connect(url: str, timeout: float = 30.0) -> Iterator[Client]:
    """A client whose API errors end the command with one readable line and exit code 1."""
    try:
        with Client(url, timeout=timeout) as api:
            yield api
    except ApiError as exc:
        fail(format_detail(exc.detail))


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    # Plain print, not Rich: no highlighting or wrapping may touch what scripts parse.
    print(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


# -- parameters -----------------------------------------------------------------------------------
def parse_value(raw: str) -> Any:
    """`3` → 3, `1e-4` → 0.0001, `true`/`False` → bool, `null` → None, `[1,2]` → list,
    anything else → the text itself (so `name=my model` needs no quotes)."""
    try:
        value = json.loads(raw)
    except ValueError:
        pass
    else:  # Python's json reads NaN and Infinity, which no JSON body may carry
        return raw if isinstance(value, float) and not math.isfinite(value) else value
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(raw)  # `.5`, `5.` and `+3` are numbers JSON does not accept
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def parse_params(pairs: Sequence[str] | None, params_json: str | None = None) -> dict[str, Any]:
    """Merge `--params-json` and the `--param key=value` pairs (later wins); usage errors exit 2."""
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            usage_error(f"--params-json: not valid JSON ({exc})")
        if not isinstance(loaded, dict):
            usage_error("--params-json: expected a JSON object")
        params.update(loaded)
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            usage_error(f"--param {pair!r}: expected KEY=VALUE")
        params[key.strip()] = parse_value(raw)
    return params


# -- rendering ------------------------------------------------------------------------------------
def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def compact(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def fields_table(rows: Mapping[str, Any], title: str | None = None) -> Table:
    """A two-column `field | value` table for one object. Values are shown as plain text (a
    `[…]` in a model name is not markup); pass a `Text` to style one."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in rows.items():
        table.add_row(name, value if isinstance(value, Text) else Text(compact(value)))
    return table


def page_caption(offset: int, shown: int, total: int) -> str:
    if not shown:
        return f"none of {total}"
    return f"{offset + 1}-{offset + shown} of {total}"


# how each kind of task event stands out in an events table
KIND_STYLE = {"verdict": "bold", "promotion": "bold magenta", "switch": "bold magenta",
              "progress": "dim", "warning": "bold yellow"}


def events_table(title: str, history: Sequence[Any]) -> Table:
    """A task's history (transitions, progress messages, notes), oldest first: the one table
    `task events`, `reindex events` and `imports events` print."""
    table = Table(title=title)
    table.add_column("time", no_wrap=True)
    table.add_column("kind")
    table.add_column("transition")
    table.add_column("message", overflow="fold")
    for event in history:
        transition = ""
        if event.to_status is not None:
            source = event.from_status.value if event.from_status else "∅"
            transition = f"{source} → {event.to_status.value}"
        table.add_row(when(event.created_at), Text(event.kind, style=KIND_STYLE.get(event.kind,
                      "")), transition, Text(event.message))
    return table
