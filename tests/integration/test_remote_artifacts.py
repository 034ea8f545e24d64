"""Tuned models in an fsspec artifact store (`EMBTUNE_ARTIFACT_URL`): uploaded whole with a
completion marker, registered under their URL, fetched once for download and re-tuning, and
nothing left behind when the upload fails."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest
from fastapi.testclient import TestClient

from tests.conftest import register_model, wait_status

pytestmark = pytest.mark.backends("sqlite-embedded")
TASKS = "/api/v1/fine-tuning/task"
MODELS = "/api/v1/embedding-models"


@pytest.fixture(params=["file", "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/remote-models"
    return f"memory://embtune-{secrets.token_hex(4)}/models"


def test_a_tuned_model_lives_in_the_store_and_can_be_tuned_again_and_downloaded(
    client_factory: Callable[..., TestClient], store_url: str, tmp_path: Path
) -> None:
    client = client_factory(artifact_url=store_url)
    base = register_model(client)
    first = wait_status(client, client.post(TASKS, json={"embedding_model_id": base}).json()["id"],
                        "done")
    tuned = client.get(f"{MODELS}/{first['result_model_id']}").json()
    assert tuned["source"] == f"{store_url}/{tuned['id']}"
    fs, root = fsspec.core.url_to_fs(tuned["source"])
    assert fs.cat_file(f"{root}/weights.txt").decode() == f"tuned from {base}\n"
    assert fs.exists(f"{root}/COMPLETE")
    assert not (tmp_path / "data" / "models" / tuned["id"]).exists()  # not kept locally

    again = wait_status(client, client.post(TASKS, json={"embedding_model_id": tuned["id"]})
                        .json()["id"], "done")
    second = client.get(f"{MODELS}/{again['result_model_id']}").json()
    assert second["parent_id"] == tuned["id"]
    fs2, root2 = fsspec.core.url_to_fs(second["source"])
    assert fs2.cat_file(f"{root2}/weights.txt").decode() == f"tuned from {tuned['id']}\n"
    assert (tmp_path / "data" / "cache" / "artifacts" / tuned["id"] / "weights.txt").exists()

    archive = client.get(f"{MODELS}/{second['id']}/download")
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
    assert f"{second['id']}/weights.txt" in names and f"{second['id']}/COMPLETE" not in names


def test_a_failed_upload_fails_the_task_and_leaves_nothing(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store should be")
    client = client_factory(artifact_url=f"file://{blocked}/models")
    base = register_model(client)
    failed = wait_status(client, client.post(TASKS, json={"embedding_model_id": base})
                         .json()["id"], "failed")
    assert "could not store the tuned model in file://" in failed["detail"]
    assert failed["result_model_id"] is None
    assert [m["id"] for m in client.get(MODELS).json()] == [base]
    assert blocked.read_text() == "a file where the store should be"
    assert not list((tmp_path / "data" / "models" / ".staging").iterdir())


def test_registering_a_model_from_the_store_needs_it_complete(
    client_factory: Callable[..., TestClient], store_url: str
) -> None:
    client = client_factory(artifact_url=store_url)
    fs, root = fsspec.core.url_to_fs(store_url)
    for name in ("half", "whole"):
        fs.makedirs(f"{root}/{name}", exist_ok=True)
    fs.pipe_file(f"{root}/half/weights.txt", b"partial upload")  # no COMPLETE marker
    fs.pipe_file(f"{root}/whole/weights.txt", b"all there")
    fs.pipe_file(f"{root}/whole/COMPLETE", b"whole")
    body = {"name": "m", "plugin_name": "sleepy"}
    refused = client.post(MODELS, json={**body, "source": f"{store_url}/half"})
    assert refused.status_code == 400 and "source" in refused.json()["detail"]
    accepted = client.post(MODELS, json={**body, "source": f"{store_url}/whole"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["source"] == f"{store_url}/whole"
