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

from embtune.errors import BadRequest
from embtune.services.models import ModelService


class ModelServing:
    def __init__(self, models: ModelService, cache_size: int = 2) -> None:
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
        """A tar.gz of the model directory in a temporary file (the caller deletes it)."""
        source = self.weights_dir(model_id)
        fd, name = tempfile.mkstemp(prefix=f"embtune-{model_id}-", suffix=".tar.gz")
        os.close(fd)
        path = Path(name)
        with tarfile.open(path, "w:gz", compresslevel=1) as tar:
            tar.add(source, arcname=model_id)
        return path

    def embed(self, model_id: str, texts: list[str]) -> list[list[float]]:
        model = self._load(model_id)
        vectors = model.encode(texts, batch_size=32, normalize_embeddings=True,
                               convert_to_numpy=True)
        return [[round(float(x), 6) for x in row] for row in vectors]

    def _load(self, model_id: str) -> Any:
        with self._lock:
            if model_id in self._cache:
                self._cache.move_to_end(model_id)
                return self._cache[model_id]
        from embtune.training.models import load_model

        model = self.models.get(model_id)
        try:
            loaded = load_model(str(self.models.weights_dir(model)), max_seq_length=256)
        except ValueError as exc:
            raise BadRequest(f"model {model_id} cannot be loaded: {exc}") from None
        with self._lock:
            self._cache[model_id] = loaded
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return loaded
