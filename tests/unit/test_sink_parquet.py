"""The Parquet sink on a local folder and on fsspec's in-memory filesystem (the object-store
path: writes through `pipe_file`), and sink config validation through the registry."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embtune.errors import InvalidParams
from embtune.sinks.base import SinkContext, SinkError
from embtune.sinks.parquet import ParquetSink
from embtune.sinks.registry import SinkRegistry

DIM = 8


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(params=["local", "memory"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ParquetSink]:
    url = None if request.param == "local" else f"memory://embtune-{uuid.uuid4().hex}"
    config = ParquetSink.Config(type="parquet", name="shop", url=url)
    s = ParquetSink(config, SinkContext(data_dir=tmp_path))
    yield s
    s.close()
    if url is not None:
        fsspec.filesystem("memory").rm(s._root, recursive=True)


def fill(sink: ParquetSink, collection: str, n: int = 10, seed: int = 0) -> np.ndarray:
    vectors = unit_rows(n, seed)
    ids = [f"item-{i:03d}" for i in range(n)]
    hashes = [hashlib.sha256(i.encode()).hexdigest() for i in ids]
    sink.create(collection, DIM)
    half = n // 2
    sink.write(collection, ids[:half], vectors[:half], hashes[:half], "model-1")
    sink.write(collection, ids[half:], vectors[half:], hashes[half:], "model-1")
    assert sink.finish(collection) == n
    return vectors


def test_round_trip_is_bit_exact(sink: ParquetSink) -> None:
    vectors = fill(sink, "shop-a", n=10)
    assert sink.count("shop-a") == 10
    ids: list[str] = []
    hashes: list[str] = []
    parts = []
    for batch_ids, batch_hashes, batch_vectors in sink.records("shop-a", batch=3):
        assert batch_vectors.dtype == np.float32 and len(batch_ids) <= 3
        ids += batch_ids
        hashes += batch_hashes
        parts.append(batch_vectors)
    assert ids == [f"item-{i:03d}" for i in range(10)]
    assert hashes == [hashlib.sha256(i.encode()).hexdigest() for i in ids]
    assert np.concatenate(parts).tobytes() == vectors.tobytes()


def test_file_has_the_fixed_size_list_schema_and_the_manifest_describes_it(
    sink: ParquetSink,
) -> None:
    fill(sink, "shop-a", n=6)
    handle, size = sink.open_vectors_file("shop-a")
    with handle:
        data = handle.read()
    assert size == len(data)
    table = pq.read_table(pa.BufferReader(data))
    assert table.schema.field("vector").type == pa.list_(pa.float32(), DIM)
    assert table.schema.field("object_id").type == pa.string()
    assert table.schema.field("text_hash").type == pa.string()
    assert table.column("model_id").to_pylist() == ["model-1"] * 6
    manifest = json.loads(sink.fs.cat_file(f"{sink._dir('shop-a')}/manifest.json"))
    assert manifest | {"created_at": None} == {
        "format": 1, "collection": "shop-a", "rows": 6, "dim": DIM, "model_id": "model-1",
        "file": "vectors.parquet", "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "created_at": None,
    }


def test_manifest_is_written_last_and_an_unfinished_collection_is_never_served(
    sink: ParquetSink,
) -> None:
    sink.create("shop-a", DIM)
    sink.write("shop-a", ["x"], unit_rows(1), ["h"], "model-1")
    folder = sink._dir("shop-a")
    assert sink.fs.exists(f"{folder}/vectors.parquet")
    assert not sink.fs.exists(f"{folder}/manifest.json")
    for refused in (
        lambda: sink.count("shop-a"),
        lambda: sink.search(unit_rows(1)[0], 1, collection="shop-a"),
        lambda: sink.open_vectors_file("shop-a"),
        lambda: list(sink.records("shop-a")),
        lambda: sink.switch("shop-a"),
    ):
        with pytest.raises(SinkError, match="is incomplete: no manifest"):
            refused()
    assert sink.collections() == ["shop-a"]  # listed, complete or not
    sink.finish("shop-a")
    assert sink.count("shop-a") == 1
    assert sink.finish("shop-a") == 1  # repeating a finish is harmless


def test_manifest_is_newer_than_the_vectors_on_disk(tmp_path: Path) -> None:
    s = ParquetSink(ParquetSink.Config(type="parquet"), SinkContext(data_dir=tmp_path))
    fill(s, "catalogue-a")
    folder = tmp_path / "vectors" / "catalogue" / "catalogue-a"
    assert s.key == f"parquet:{tmp_path / 'vectors'}/catalogue"
    manifest, vectors = folder / "manifest.json", folder / "vectors.parquet"
    assert manifest.stat().st_mtime_ns >= vectors.stat().st_mtime_ns
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "vectors.parquet"]


def test_a_file_changed_after_its_manifest_is_refused(tmp_path: Path) -> None:
    s = ParquetSink(ParquetSink.Config(type="parquet"), SinkContext(data_dir=tmp_path))
    fill(s, "catalogue-a")
    with open(tmp_path / "vectors/catalogue/catalogue-a/vectors.parquet", "ab") as f:
        f.write(b"junk")
    with pytest.raises(SinkError, match="its manifest says"):
        s.open_vectors_file("catalogue-a")


def test_switch_moves_the_alias_and_returns_the_previous_collection(sink: ParquetSink) -> None:
    fill(sink, "shop-a", seed=1)
    fill(sink, "shop-b", seed=2)
    assert sink.live() is None
    assert sink.switch("shop-a") is None
    assert sink.switch("shop-b") == "shop-a"
    assert sink.switch("shop-b") == "shop-b"  # already live: no-op
    assert sink.live() == "shop-b"
    current = json.loads(sink.fs.cat_file(f"{sink._base()}/CURRENT.json"))
    assert current == {"collection": "shop-b"}
    assert sink.collections() == ["shop-a", "shop-b"]


def test_drop_removes_a_collection_and_is_safe_to_repeat(sink: ParquetSink) -> None:
    fill(sink, "shop-a")
    sink.create("shop-b", DIM)  # an unfinished write: drop closes its writer
    sink.write("shop-b", ["x"], unit_rows(1), ["h"], "model-1")
    sink.drop("shop-a")
    sink.drop("shop-b")
    sink.drop("shop-b")
    assert sink.collections() == []
    with pytest.raises(SinkError, match="no manifest"):
        sink.count("shop-a")
    with pytest.raises(SinkError, match="not being written"):
        sink.write("shop-b", ["x"], unit_rows(1), ["h"], "model-1")


def test_search_finds_the_true_nearest_neighbours(sink: ParquetSink) -> None:
    with pytest.raises(SinkError, match="has no live collection; run a reindex first"):
        sink.search(unit_rows(1)[0], 3)
    vectors = fill(sink, "shop-a", n=200, seed=3)
    sink.switch("shop-a")
    query = unit_rows(1, seed=99)[0] * 3.0  # not normalised: the sink normalises it
    hits = sink.search(query, 5)
    expected = np.argsort(-(vectors @ (query / np.linalg.norm(query))))[:5]
    assert [h.object_id for h in hits] == [f"item-{i:03d}" for i in expected]
    assert hits[0].score == pytest.approx(float(vectors[expected[0]] @ query) / 3.0, abs=1e-5)
    assert [h.object_id for h in sink.search(vectors[17], 1)] == ["item-017"]
    assert len(sink.search(query, 1000)) == 200


def test_ties_are_broken_by_object_id_and_a_recreated_collection_is_not_served_stale(
    sink: ParquetSink,
) -> None:
    same = np.tile(unit_rows(1), (4, 1))
    sink.create("shop-a", DIM)
    sink.write("shop-a", ["d", "b", "c", "a"], same, ["h"] * 4, "m")
    sink.finish("shop-a")
    assert [h.object_id for h in sink.search(same[0], 2, collection="shop-a")] == ["a", "b"]
    fill(sink, "shop-a", n=4)  # same name, new content
    hits = sink.search(same[0], 4, collection="shop-a")
    assert {h.object_id for h in hits} == {f"item-{i:03d}" for i in range(4)}


def test_write_refuses_mismatched_shapes(sink: ParquetSink) -> None:
    sink.create("shop-a", DIM)
    with pytest.raises(SinkError, match="do not match"):
        sink.write("shop-a", ["a", "b"], unit_rows(3), ["h", "h"], "m")


def test_an_unwritable_root_is_a_sink_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the root should be")
    config = ParquetSink.Config(type="parquet", url=str(blocker))
    s = ParquetSink(config, SinkContext(data_dir=tmp_path))
    with pytest.raises(SinkError, match=f"could not create .*{blocker}"):
        s.create("catalogue-a", DIM)


def test_key_names_the_place_without_credentials(tmp_path: Path) -> None:
    config = ParquetSink.Config(type="parquet", name="n", url="ftp://me:s3cret@files.example/v/")
    s = ParquetSink(config, SinkContext(data_dir=tmp_path))
    assert s.key == "parquet:ftp://files.example/v/n"
    local = ParquetSink.Config(type="parquet", url=f"file://{tmp_path}/v")
    assert ParquetSink(local, SinkContext(data_dir=tmp_path)).key == (
        f"parquet:{tmp_path}/v/catalogue"
    )


@pytest.fixture
def registry(tmp_path: Path) -> SinkRegistry:
    return SinkRegistry.discover(SinkContext(data_dir=tmp_path))


def test_registry_names_an_unknown_type(registry: SinkRegistry) -> None:
    with pytest.raises(InvalidParams) as caught:
        registry.validate({"type": "faiss"})
    assert caught.value.errors[0]["loc"] == ["body", "sink", "type"]
    assert "parquet" in caught.value.errors[0]["msg"] and "qdrant" in caught.value.errors[0]["msg"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "parquet", "name": "../up"}, "name"),
        ({"type": "parquet", "name": ""}, "name"),
        ({"type": "parquet", "url": "nosuchfs://bucket/x"}, "url"),
        ({"type": "parquet", "url": ""}, "url"),
        ({"type": "parquet", "url": "/tmp/a\0b"}, "url"),
        ({"type": "parquet", "url": "relative/dir"}, "url"),
        ({"type": "parquet", "colour": "red"}, "colour"),
        ({"type": "qdrant", "url": "ftp://qdrant:6333"}, "url"),
        ({"type": "qdrant", "timeout_s": 0}, "timeout_s"),
        ({"type": "qdrant", "batch": 0}, "batch"),
        ({"type": "qdrant", "apikey": "x"}, "apikey"),
    ],
)
def test_registry_names_the_bad_field(registry: SinkRegistry, raw: dict, field: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        registry.validate(raw)
    assert [e["loc"] for e in caught.value.errors] == [["body", "sink", field]]


def test_registry_accepts_good_configs(registry: SinkRegistry, tmp_path: Path) -> None:
    parquet = registry.validate({"type": "parquet", "name": "shop", "url": "memory://x"})
    assert isinstance(parquet, ParquetSink.Config) and parquet.url == "memory://x"
    assert registry.validate({"type": "parquet", "url": f"file://{tmp_path}"}).type == "parquet"
    qdrant = registry.validate({"type": "qdrant", "url": "https://q.example:6333"})
    assert qdrant.type == "qdrant"
    assert registry.validate(None).type == "qdrant"
