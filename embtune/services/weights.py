"""Using a registered model: download its weights, or embed texts with it.

Loaded models are kept in a small LRU cache: a search team re-indexing calls `embed` in a loop,
and loading weights per call would cost more than encoding.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from embtune.artifacts import SQLITE_SUFFIXES
from embtune.errors import BadRequest
from embtune.services.models import ModelRegistry


class ModelWeights:
    """What is done with a registered model's weights: archive them for download, load them to
    embed texts. (`ModelRegistry` owns the records; this owns the files and loaded models.)"""

    def __init__(self, models: ModelRegistry, cache_size: int = 2) -> None:
        self.models = models
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def weights_dir(self, model_id: str) -> Path:
        model = self.models.get(model_id)
        try:
            return self.models.weights_dir(model)
        except ValueError as exc:
            raise BadRequest(f"weights of model {model_id} are not available: {exc}") from None

    def archive(self, model_id: str) -> Path:
        """A tar.gz of the model directory in a temporary file (the caller deletes it).

        Besides the source check (`ModelRegistry.weights_dir`), every member is filtered by path
        before it is opened: a SQLite database or its -wal/-shm, or anything in staging or a
        cache, never goes in (opening the live database would break its locks)."""
        source = self.weights_dir(model_id)
        areas = self.models.areas
        fd, name = tempfile.mkstemp(prefix=f"embtune-{model_id}-", suffix=".tar.gz")
        os.close(fd)
        path = Path(name)

        def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
            relative = Path(member.name).relative_to(model_id)
            real = source / relative
            if areas is not None:
                return None if areas.excluded(real, source) else member
            return None if real.name.endswith(SQLITE_SUFFIXES) else member

        try:
            with tarfile.open(path, "w:gz", compresslevel=1) as tar:
                tar.add(source, arcname=model_id, filter=keep)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def embed(self, model_id: str, texts: list[str]) -> list[list[float]]:
        model = self._load(model_id)
        vectors = model.encode(texts, batch_size=32, normalize_embeddings=True,
                               convert_to_numpy=True)
        return [[round(float(x), 6) for x in row] for row in vectors]

    def query_vector(self, model_id: str, text: str) -> Any:
        """One query's L2-normalised float32 vector (numpy), through the model's query prompt."""
        model = self._load(model_id)
        return model.encode_query([text], normalize_embeddings=True, convert_to_numpy=True)[0]

    def _load(self, model_id: str) -> Any:
        with self._lock:
            if model_id in self._cache:
                self._cache.move_to_end(model_id)
                return self._cache[model_id]
        weights = self.weights_dir(model_id)  # checked before torch is even imported
        from embtune.training.models import load_model

        try:
            loaded = load_model(str(weights), max_seq_length=256)
        except ValueError as exc:
            raise BadRequest(f"model {model_id} cannot be loaded: {exc}") from None
        with self._lock:
            self._cache[model_id] = loaded
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return loaded
