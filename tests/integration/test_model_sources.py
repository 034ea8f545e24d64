"""A model source is a model directory, never what embtune itself writes: not the data dir, the
database's directory or any ancestor of them, not `models/`, staging or a cache. Checked at
registration, again before a download or embed (for rows registered before the check), and
the archive filters SQLite files and service areas by path as a last line."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from embtune.storage.db import utcnow
from embtune.storage.ids import new_id
from embtune.storage.models_repo import ModelRepository
from tests.conftest import register_model, wait_status

pytestmark = pytest.mark.backends("sqlite-embedded")
MODELS = "/api/v1/embedding-models"
TASKS = "/api/v1/fine-tuning/task"
BODY = {"name": "m", "plugin_name": "sleepy"}


def fake_model(path: Path) -> Path:
    """A directory with a model's marker files (enough to register; never loaded here)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "modules.json").write_text("[]")
    return path


def archive_names(client: TestClient, model_id: str) -> list[str]:
    response = client.get(f"{MODELS}/{model_id}/download")
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        return tar.getnames()


def insert_row(client: TestClient, source: str) -> str:
    """A row as an older release could have registered it, written past the API."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    model_id = new_id()
    with runtime.db.transaction() as session:
        ModelRepository().insert(session, {
            "id": model_id, "name": "old", "plugin_name": "sleepy", "source": source,
            "parent_id": None, "task_id": None, "metrics": None, "created_at": utcnow(),
        })
    return model_id


def test_embtunes_own_directories_are_never_a_model_source(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    database = tmp_path / "db" / "embtune.db"  # outside the data dir, as a URL may put it
    database.parent.mkdir()
    client = client_factory(  # a root above the data dir, so its ancestors are in a root
        model_roots=[tmp_path], database_url=f"sqlite:///{database}"
    )
    assert database.is_file()
    link = tmp_path / "link-to-data"
    link.symlink_to(data)
    forbidden = {
        "the data dir": data,
        "models/": data / "models",
        "models/.staging": data / "models" / ".staging",
        "a staged run": data / "models" / ".staging" / "task-run",
        "cache/": data / "cache",
        "a cached model": data / "cache" / "artifacts" / "x",
        "an ancestor of the data dir": tmp_path,
        "the database's directory": database.parent,
        "a symlink to the data dir": link,
        "the data dir through ..": data / "models" / "..",
    }
    for what, path in forbidden.items():
        if not path.is_symlink():
            fake_model(path)  # marker files do not make embtune's own areas a model
        response = client.post(MODELS, json={**BODY, "source": str(path)})
        assert response.status_code == 400, (what, response.text)
        detail = response.json()["detail"]
        assert detail.startswith("source: ") and "embtune writes" in detail, (what, detail)
    plain = data / "imports" / "plain"
    plain.mkdir(parents=True)
    response = client.post(MODELS, json={**BODY, "source": str(plain)})
    assert response.status_code == 400
    assert "source:" in response.json()["detail"]
    assert "not a model directory" in response.json()["detail"]
    assert client.get(MODELS).json() == []


def test_model_directories_tuned_iterations_and_builtins_register_and_download(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    client = client_factory()
    imported = fake_model(data / "imports" / "my-model")
    response = client.post(MODELS, json={**BODY, "source": str(imported)})
    assert response.status_code == 201, response.text
    assert archive_names(client, response.json()["id"]) == [
        response.json()["id"], *(f"{response.json()['id']}/{n}"
                                 for n in ("config.json", "modules.json"))
    ]

    base = register_model(client)
    task = client.post(TASKS, json={"embedding_model_id": base}).json()
    tuned = client.get(f"{MODELS}/{wait_status(client, task['id'], 'done')['result_model_id']}")
    source = tuned.json()["source"]
    assert Path(source).parent == (data / "models").resolve()
    assert f"{tuned.json()['id']}/weights.txt" in archive_names(client, tuned.json()["id"])
    again = client.post(MODELS, json={**BODY, "source": source})  # its plugin wrote no config
    assert again.status_code == 201, again.text
    retuned = client.post(TASKS, json={"embedding_model_id": again.json()["id"]}).json()
    assert wait_status(client, retuned["id"], "done")["result_model_id"]

    names = archive_names(client, base)  # builtin:all-MiniLM-L6-v2
    assert f"{base}/modules.json" in names and f"{base}/model.safetensors" in names


def test_a_row_registered_before_the_check_is_refused_at_download_and_embed(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    client = client_factory()
    fake_model(data / "models")
    fake_model(data)  # marker files in the data dir change nothing
    for source in (str(data), str(data / "models"), str(tmp_path)):
        model_id = insert_row(client, source)
        download = client.get(f"{MODELS}/{model_id}/download")
        assert download.status_code == 400, download.text
        assert "embtune writes" in download.json()["detail"]
        assert download.headers["content-type"].startswith("application/json")
        embed = client.post(f"{MODELS}/{model_id}/embed", json={"texts": ["x"]})
        assert embed.status_code == 400 and "embtune writes" in embed.json()["detail"]


def test_an_archive_never_holds_a_database_file(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    client = client_factory()
    published = fake_model(data / "models" / "hand-made")  # as if a plugin left these behind
    for name in ("notes.db", "notes.db-wal", "notes.db-shm", "x.sqlite3", "x-journal"):
        (published / name).write_text("not weights")
    (published / "weights.bin").write_text("weights")
    model_id = insert_row(client, str(published))
    names = archive_names(client, model_id)
    assert sorted(names) == sorted([model_id] + [f"{model_id}/{n}" for n in (
        "config.json", "modules.json", "weights.bin")])
