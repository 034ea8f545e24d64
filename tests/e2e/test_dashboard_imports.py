"""The dashboard's Imports pages in a real browser against a live server (SQLite + embedded
broker): a real import task's figures and rejected-rows link, a run's live progress, and
cancel/restart of a waiting task."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import screenshot

try:
    from playwright.sync_api import expect
except ModuleNotFoundError:  # the `browser` fixture skips the browser tests
    expect = None

pytestmark = pytest.mark.backends("sqlite-embedded")

IMPORTS = "/api/v1/imports"
HOSTILE = "<img src=x onerror=alert(1)>"


def sessions_file(tmp_path: Path, bad_lines: int = 1) -> Path:
    """Under the server's data dir (the `serve` fixture's `tmp_path / "data"`)."""
    path = tmp_path / "data" / "exports" / "sessions.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"session_id": f"s{n}", "search_query": f"q{n}",
                        "search_results": [{"object_id": "a"}], "clicks": ["a"]})
            for n in range(5)]
    path.write_text("\n".join(rows + ["{broken"] * bad_lines) + "\n")
    return path


def create_import(api: httpx.Client, path: Path) -> dict[str, Any]:
    response = api.post(IMPORTS, json={"url": str(path), "kind": "sessions"})
    assert response.status_code == 201, response.text
    return response.json()


def wait_finished(api: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = api.get(f"{IMPORTS}/{task_id}").json()
        if task["status"] not in ("pending", "processing"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"import {task_id} did not finish in {timeout} s")


def figure(page: Any, name: str) -> Any:
    return page.locator(f"#import-metrics tr[data-metric='{name}'] td")


def test_imports_pages_show_a_finished_import_and_its_rejections(
    serve: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    url = serve()
    path = sessions_file(tmp_path)
    with httpx.Client(base_url=url) as api:
        task = create_import(api, path)
        done = wait_finished(api, task["id"])
    assert done["status"] == "done", done["detail"]

    page.goto(f"{url}/")
    page.locator("nav a[data-page=imports]").click()
    expect(page.locator("nav a.active")).to_have_text("Imports")
    row = page.locator(f"#import-tasks tr[data-id='{task['id']}']")
    expect(row.locator(".badge")).to_have_text("done")
    expect(row.locator("td.kind")).to_have_text("sessions")
    expect(row.locator("td.source")).to_have_attribute("title", str(path))
    expect(row.locator("td.source")).to_have_text(f"…{str(path)[-47:]}")
    expect(row.locator("td.counts")).to_have_text("5 / 0 / 0 / 1")
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    screenshot(page, "imports-list")

    row.get_by_role("link", name=task["id"]).click()
    expect(page).to_have_url(f"{url}/#/imports/{task['id']}")
    expect(page.locator("#status .badge")).to_have_text("done")
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#restart")).to_be_disabled()  # a done import is final
    expect(page.locator("#progress-counts")).to_have_text(
        "5 new · 0 repeated · 0 in conflict · 1 rejected")
    expect(figure(page, "rows")).to_have_text("6")
    expect(figure(page, "new (accepted)")).to_have_text("5")
    expect(figure(page, "rejected")).to_have_text("1")
    expect(figure(page, "resumed from row")).to_have_text("0")
    expect(page.locator("#rejections")).to_contain_text("1 row was not stored.")
    expect(page.locator("#facts")).to_contain_text(str(path))
    expect(page.locator("#events")).to_contain_text("processing → done")
    link = page.locator("#rejections-link")
    expect(link).to_have_attribute("href", f"/api/v1/imports/{task['id']}/rejections")
    with page.expect_download() as download:
        link.click()
    report = Path(download.value.path()).read_text().splitlines()
    assert [json.loads(line)["row"] for line in report] == [6]
    screenshot(page, "imports-task-done")


def test_a_running_import_shows_rows_bytes_rate_and_eta(
    serve: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    """Mid-run figures as a worker reports them, served by rewriting the live API's answers
    (a real import of a few rows is over before a page could see it)."""
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as api:
        task = create_import(api, sessions_file(tmp_path))
    running = {"status": "processing", "detail": HOSTILE, "progress": {
        "fraction": 0.25, "step": 2_500_000, "total_steps": 10_000_000, "message": "",
        "rows": 12_000, "rows_per_s": 25_000.4, "bytes": 2_500_000, "total_bytes": 10_000_000,
        "eta_s": 3.2, "accepted": 11_998, "duplicate": 0, "conflict": 0, "rejected": 2}}

    def rewrite(route: Any) -> None:
        answer = route.fetch().json()
        body = [{**t, **running} for t in answer] if isinstance(answer, list) else {
            **answer, **running}
        route.fulfill(json=body, headers={"X-Total-Count": "1"})

    page.route(f"**{IMPORTS}?*", rewrite)
    page.route(f"**{IMPORTS}/{task['id']}", rewrite)
    page.goto(f"{url}/#/imports")
    row = page.locator(f"#import-tasks tr[data-id='{task['id']}']")
    expect(row.locator(".badge")).to_have_text("processing")
    expect(row.locator(".progress-note")).to_have_text(
        "12,000 rows · 2.5 MB of 10.0 MB · 25,000 rows/s · ETA 3s")
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "25")
    expect(row.locator("td.counts")).to_have_text("11,998 / 0 / 0 / 2")

    page.goto(f"{url}/#/imports/{task['id']}")
    expect(page.locator("#progress-text")).to_have_text(
        "12,000 rows · 2.5 MB of 10.0 MB · 25,000 rows/s · ETA 3s")
    expect(page.locator("#detail pre")).to_have_text(HOSTILE)
    expect(page.locator("#metrics")).to_contain_text("Figures come when the run is done.")
    expect(page.locator("#rejections")).to_contain_text("2 rows were not stored")
    assert page.locator("#app img").count() == 0, "API text must never become markup"


def test_cancel_and_restart_a_waiting_import(
    serve: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    url = serve(run_worker=False)  # no worker: the task stays pending
    with httpx.Client(base_url=url) as api:
        task = create_import(api, sessions_file(tmp_path, bad_lines=0))
        page.goto(f"{url}/#/imports/{task['id']}")
        badge = page.locator("#status .badge")
        expect(badge).to_have_text("pending")
        expect(page.locator("#progress-text")).to_have_text("waiting for a worker")
        page.locator("#cancel").click()
        expect(badge).to_have_text("canceled")
        expect(page.locator("#action-error")).to_be_empty()
        assert api.get(f"{IMPORTS}/{task['id']}").json()["status"] == "canceled"
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#restart").click()
        expect(badge).to_have_text("pending")
        expect(page.locator("#events")).to_contain_text("pending → canceled")


def test_the_imports_script_is_served_like_the_others(serve: Callable[..., str]) -> None:
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as client:
        response = client.get("/static/imports.js")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/javascript")
    assert "export function importsPage" in response.text
