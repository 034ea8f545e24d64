"""Finds vector sinks: the built-in ones and the `embtune.sinks` entry-point group."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from embtune.errors import InvalidParams
from embtune.sinks.base import SinkConfig, SinkContext, VectorSink

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "embtune.sinks"
BUILTIN_SINKS: tuple[str, ...] = (
    "embtune.sinks.parquet:ParquetSink",
    "embtune.sinks.qdrant:QdrantSink",
)
DEFAULT_SINK = {"type": "qdrant"}


def _load(path: str) -> type[VectorSink]:
    module_name, _, attr = path.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(obj, type) and issubclass(obj, VectorSink)):
        raise TypeError(f"{path} is not a VectorSink subclass")
    return obj


class SinkRegistry:
    def __init__(self, classes: Iterable[type[VectorSink]], context: SinkContext) -> None:
        self.context = context
        self._classes = {cls.type_name: cls for cls in classes}

    @classmethod
    def discover(cls, context: SinkContext) -> SinkRegistry:
        classes: list[type[VectorSink]] = [_load(path) for path in BUILTIN_SINKS]
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                classes.append(_load(ep.value))
            except Exception:
                log.exception("sink entry point %s failed to load", ep.value)
        return cls(classes, context)

    def types(self) -> list[str]:
        return sorted(self._classes)

    def validate(self, raw: Mapping[str, Any] | None, loc: tuple[str, ...] = ("body", "sink"))\
            -> SinkConfig:
        """A sink config, validated by its sink's `Config`; a 422 naming each bad field."""
        data = dict(raw or DEFAULT_SINK)
        kind = data.get("type")
        sink_class = self._classes.get(kind) if isinstance(kind, str) else None
        if sink_class is None:
            msg = f"unknown sink type {kind!r}; installed: {', '.join(self.types())}"
            raise InvalidParams(
                f"{'.'.join(loc[1:])}.type: {msg}",
                [{"loc": [*loc, "type"], "msg": msg, "type": "value_error"}],
            )
        try:
            return sink_class.Config.model_validate(data)
        except ValidationError as exc:
            errors = [
                {"loc": [*loc, *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
            first = errors[0]
            raise InvalidParams(
                f"{'.'.join(first['loc'][1:])}: {first['msg']}", errors
            ) from None

    def open(self, config: SinkConfig | Mapping[str, Any]) -> VectorSink:
        """A sink for a validated config (or a stored one, validated again)."""
        if not isinstance(config, SinkConfig):
            config = self.validate(config)
        return self._classes[config.type](config, self.context)
