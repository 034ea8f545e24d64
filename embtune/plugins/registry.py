"""Finds fine-tuning methods: built-ins, the `embtune.plugins` entry-point group, and classes
named in settings (`EMBTUNE_PLUGINS=module:Class`), so users can ship methods as packages."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from importlib.metadata import entry_points

from embtune.errors import BadRequest
from embtune.plugins.base import FineTuningPlugin

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "embtune.plugins"
BUILTIN_PLUGINS: tuple[str, ...] = (
    "embtune.plugins.sentence_transformers:ClickstreamMNRLPlugin",
    "embtune.plugins.sentence_transformers:ClickMarginPlugin",
    "embtune.plugins.frozen:FrozenPlugin",
)
DEFAULT_PLUGIN = "sentence-transformers-mnrl"


def _load(path: str) -> type[FineTuningPlugin]:
    module_name, _, attr = path.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(obj, type) and issubclass(obj, FineTuningPlugin)):
        raise TypeError(f"{path} is not a FineTuningPlugin subclass")
    return obj


class PluginRegistry:
    def __init__(self, plugins: Iterable[FineTuningPlugin]) -> None:
        self._plugins: dict[str, FineTuningPlugin] = {}
        for plugin in plugins:
            self._plugins[plugin.name] = plugin

    @classmethod
    def discover(cls, extra: Iterable[str] = ()) -> PluginRegistry:
        """Load every source; a broken third-party plugin is logged, not fatal."""
        classes: list[type[FineTuningPlugin]] = []
        for path in BUILTIN_PLUGINS:
            try:
                classes.append(_load(path))
            except ImportError:
                log.exception("built-in plugin %s could not be imported", path)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                classes.append(_load(ep.value))
            except Exception:
                log.exception("plugin entry point %s failed to load", ep.value)
        for path in extra:
            classes.append(_load(path))  # explicitly configured: fail loudly
        return cls(c() for c in classes)

    def all(self) -> list[FineTuningPlugin]:
        return sorted(self._plugins.values(), key=lambda p: p.name)

    def find(self, name: str) -> FineTuningPlugin | None:
        return self._plugins.get(name)

    def get_trainable(self, name: str) -> FineTuningPlugin:
        """The single plugin check, shared by task creation and the worker."""
        plugin = self._plugins.get(name)
        if plugin is None:
            known = ", ".join(sorted(self._plugins)) or "none"
            raise BadRequest(f"plugin {name!r} is not installed (installed: {known})")
        if not plugin.trainable:
            raise BadRequest(f"plugin {name!r} cannot fine-tune models")
        return plugin
