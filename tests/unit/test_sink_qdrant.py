"""The Qdrant sink in Qdrant's embedded local mode (no server), plus one unreachable server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embtune.sinks.base import SinkContext, SinkError
from embtune.sinks.qdrant import QdrantSink, close_local_clients, point_id

DIM = 8


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def context(tmp_path: Path) -> Iterator[SinkContext]:
    yield SinkContext(data_dir=tmp_path)
    close_local_clients()


@pytest.fixture
def sink(context: SinkContext) -> QdrantSink:
    return QdrantSink(QdrantSink.Config(type="qdrant", name="shop", batch=3), context)


def fill(sink: QdrantSink, collection: str, n: int = 10, seed: int = 0, prefix: str = "item"):
    vectors = unit_rows(n, seed)
    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    sink.create(collection, DIM)
    sink.write(collection, ids, vectors, [f"hash-{i}" for i in ids], "model-1")
    assert sink.finish(collection) == n
    return ids, vectors


def test_round_trip(sink: QdrantSink) -> None:
    ids, vectors = fill(sink, "shop-a", n=10)  # 4 upserts of at most 3 points
    assert sink.count("shop-a") == 10
    seen: dict[str, tuple[str, np.ndarray]] = {}
    for batch_ids, batch_hashes, batch_vectors in sink.records("shop-a", batch=4):
        assert len(batch_ids) <= 4 and batch_vectors.dtype == np.float32
        assert batch_vectors.shape == (len(batch_ids), DIM)
        seen.update(zip(batch_ids, zip(batch_hashes, batch_vectors, strict=True), strict=True))
    assert sorted(seen) == ids
    for i, object_id in enumerate(ids):
        text_hash, vector = seen[object_id]
        assert text_hash == f"hash-{object_id}"
        np.testing.assert_allclose(vector, vectors[i], atol=1e-6)  # Qdrant renormalises


def test_rewriting_an_object_replaces_its_point(sink: QdrantSink) -> None:
    ids, vectors = fill(sink, "shop-a", n=5)
    sink.write("shop-a", ids[:2], vectors[:2][::-1], ["new", "new"], "model-2")
    assert sink.count("shop-a") == 5
    hashes = {i: h for batch in sink.records("shop-a") for i, h in zip(*batch[:2], strict=True)}
    assert hashes[ids[0]] == "new" and hashes[ids[4]] == f"hash-{ids[4]}"
    assert point_id("item-000") == point_id("item-000") != point_id("item-001")


def test_create_replaces_a_leftover(sink: QdrantSink) -> None:
    fill(sink, "shop-a", n=5)
    sink.create("shop-a", DIM)
    assert sink.count("shop-a") == 0


def test_switch_and_search_follow_the_alias(sink: QdrantSink) -> None:
    with pytest.raises(SinkError, match="has no live collection; run a reindex first"):
        sink.search(unit_rows(1)[0], 3)
    _, a_vectors = fill(sink, "shop-a", n=20, seed=1, prefix="a")
    b_ids, b_vectors = fill(sink, "shop-b", n=20, seed=2, prefix="b")
    assert sink.live() is None
    assert sink.switch("shop-a") is None
    assert sink.live() == "shop-a"
    hits = sink.search(a_vectors[7], 3)
    assert hits[0].object_id == "a-007" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.object_id.startswith("a-") for h in hits)

    assert sink.switch("shop-b") == "shop-a"
    assert sink.switch("shop-b") == "shop-b"  # already live: no-op
    assert sink.live() == "shop-b"
    assert [h.object_id for h in sink.search(b_vectors[3], 1)] == ["b-003"]
    assert all(h.object_id.startswith("b-") for h in sink.search(a_vectors[7], 5))
    # a named collection is searched whatever is live
    assert sink.search(a_vectors[7], 1, collection="shop-a")[0].object_id == "a-007"
    expected = np.argsort(-(b_vectors @ a_vectors[7]))[:5]
    assert [h.object_id for h in sink.search(a_vectors[7], 5)] == [b_ids[i] for i in expected]


def test_switch_refuses_a_missing_collection(sink: QdrantSink) -> None:
    with pytest.raises(SinkError, match="has no collection 'shop-x'"):
        sink.switch("shop-x")
    assert sink.live() is None


def test_drop_collections_and_missing(sink: QdrantSink, context: SinkContext) -> None:
    fill(sink, "shop-a", n=3)
    fill(sink, "shop-b", n=3)
    other = QdrantSink(QdrantSink.Config(type="qdrant", name="other"), context)
    fill(other, "other-a", n=3)  # a second sink on the same local folder shares its client
    assert sink.collections() == ["shop-a", "shop-b"]
    assert other.collections() == ["other-a"]
    sink.drop("shop-a")
    sink.drop("shop-a")
    assert sink.collections() == ["shop-b"]
    with pytest.raises(SinkError, match="has no collection 'shop-a'"):
        sink.count("shop-a")
    with pytest.raises(SinkError, match="has no collection 'shop-a'"):
        list(sink.records("shop-a"))


def test_local_client_survives_close_local_clients(sink: QdrantSink) -> None:
    fill(sink, "shop-a", n=3)
    close_local_clients()  # the folder is reopened on the next call
    assert sink.count("shop-a") == 3


def test_concurrent_writers_share_the_local_client(sink: QdrantSink) -> None:
    errors: list[BaseException] = []

    def run(collection: str, seed: int) -> None:
        try:
            fill(sink, collection, n=30, seed=seed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"shop-{i}", i)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [sink.count(f"shop-{i}") for i in range(3)] == [30, 30, 30]


def test_key_has_no_secret(context: SinkContext) -> None:
    local = QdrantSink(QdrantSink.Config(type="qdrant"), context)
    assert local.key == f"qdrant:local:{context.data_dir / 'qdrant'}/catalogue"
    config = QdrantSink.Config(type="qdrant", url="https://q.example:6333/")
    keyed = SinkContext(data_dir=context.data_dir, qdrant_api_key="s3cret")
    server = QdrantSink(config, keyed)
    assert server.key == "qdrant:https://q.example:6333/catalogue"
    service = SinkContext(data_dir=context.data_dir, qdrant_url="http://qdrant:6333")
    assert QdrantSink(QdrantSink.Config(type="qdrant"), service).key == (
        "qdrant:http://qdrant:6333/catalogue"
    )


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_unreachable_server_is_a_sink_error_without_the_api_key(context: SinkContext) -> None:
    config = QdrantSink.Config(type="qdrant", url="http://127.0.0.1:9", timeout_s=1)
    sink = QdrantSink(config, SinkContext(data_dir=context.data_dir, qdrant_api_key="s3cret"))
    try:
        with pytest.raises(SinkError) as caught:
            sink.live()
        assert "qdrant at http://127.0.0.1:9 is unreachable" in caught.value.detail
        assert "s3cret" not in caught.value.detail
        with pytest.raises(SinkError, match="unreachable"):
            sink.write("c", ["x"], unit_rows(1), ["h"], "m")
    finally:
        sink.close()


def test_an_api_key_in_a_sink_config_is_refused(context: SinkContext) -> None:
    """Sink configs are stored with tasks and aliases: the key is a service setting only."""
    from embtune.errors import InvalidParams
    from embtune.sinks.registry import SinkRegistry

    with pytest.raises(InvalidParams) as caught:
        SinkRegistry.discover(context).validate({"type": "qdrant", "api_key": "s3cret"})
    assert caught.value.errors[0]["loc"] == ["body", "sink", "api_key"]


def test_local_writes_survive_closing_and_reopening_the_folder(context: SinkContext) -> None:
    """Local mode's commits are made cheap (WAL): what `finish` counted is still there when
    the folder is opened again by a new client."""
    sink = QdrantSink(QdrantSink.Config(type="qdrant"), context)
    sink.create("catalogue-c1", DIM)
    sink.write("catalogue-c1", [f"o{i}" for i in range(300)], unit_rows(300), ["h"] * 300, "m")
    assert sink.finish("catalogue-c1") == 300
    close_local_clients()
    reopened = QdrantSink(QdrantSink.Config(type="qdrant"), context)
    assert reopened.count("catalogue-c1") == 300
