"""The dashboard's reindex pages in a real browser against a live server (SQLite + embedded
broker): real reindex runs into a Parquet sink, their figures, a search of what they wrote,
cancelling a waiting task, and what an alias's sink serves."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import screenshot
from tests.e2e.test_dashboard import register_model, shown

try:
    from playwright.sync_api import expect
except ModuleNotFoundError:  # the `browser` fixture skips the browser tests
    expect = None

pytestmark = pytest.mark.backends("sqlite-embedded")

REINDEX = "/api/v1/reindex/task"
HOSTILE = "<img src=x onerror=alert(1)>"
# 20 items; "blue silk tie" is item-12 (the API test's catalogue).
ITEMS = [{"object_id": f"item-{i:02d}", "text": text} for i, text in enumerate(
    f"{colour} {thing}" for colour in ("red", "green", "blue", "black")
    for thing in ("wool scarf", "leather boots", "silk tie", "denim jacket", "linen shirt"))]


def upsert_items(api: httpx.Client) -> None:
    response = api.post("/api/v1/items", json={"items": ITEMS})
    assert response.status_code == 200, response.text


def create_reindex(api: httpx.Client, model_id: str, **body: Any) -> dict[str, Any]:
    body = {"model_id": model_id, "sink": {"type": "parquet"}, **body}
    response = api.post(REINDEX, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_done(api: httpx.Client, task_id: str, timeout: float = 120) -> dict[str, Any]:
    """The task once finished: a real run encodes with MiniLM, which takes a few seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = api.get(f"{REINDEX}/{task_id}").json()
        if task["status"] not in ("pending", "processing"):
            assert task["status"] == "done", task["detail"]
            return task
        time.sleep(0.2)
    raise AssertionError(f"reindex task {task_id} did not finish in {timeout} s")


def figure(page: Any, name: str) -> Any:
    return page.locator(f"#reindex-metrics tr[data-metric='{name}'] td")


def test_reindex_pages_follow_real_runs_and_search_what_they_wrote(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve()
    with httpx.Client(base_url=url) as api:
        model_id = register_model(api)
        upsert_items(api)
        full = create_reindex(api, model_id)

        page.goto(f"{url}/")
        page.locator("nav a[data-page=reindex]").click()
        expect(page.locator("nav a.active")).to_have_text("Reindex")
        row = page.locator(f"#reindex-tasks tr[data-id='{full['id']}']")
        expect(row.locator(".badge")).to_have_text("done", timeout=120_000)  # polls every 2 s
        done = wait_done(api, full["id"])
        metrics = done["metrics"]
        assert metrics["encoded"] + metrics["reused"] == 20
        expect(row.locator("td.sink")).to_have_text("parquet · catalogue")
        expect(row.locator("td.mode")).to_have_text("full")
        expect(row.locator("td.counts")).to_have_text(
            f"{metrics['encoded']} / {metrics['reused']} / 0")
        expect(row).to_contain_text("mini")  # the model, by name
        expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")

        # an incremental run copies the unchanged vectors: newest first in the list
        again = create_reindex(api, model_id, incremental=True)
        newest = page.locator("#reindex-tasks tbody tr").first
        expect(newest).to_have_attribute("data-id", again["id"], timeout=5_000)
        expect(newest.locator(".badge")).to_have_text("done", timeout=120_000)
        expect(newest.locator("td.mode")).to_have_text("incremental")
        expect(newest.locator("td.counts")).to_have_text("0 / 0 / 20")
        expect(page.locator("#count")).to_have_text(shown(1, 2, 2))
        screenshot(page, "reindex-list")

        # the full run's page: its figures, events and a search of the collection it wrote
        row.get_by_role("link", name=full["id"]).click()
        expect(page).to_have_url(f"{url}/#/reindex/{full['id']}")
        expect(page.locator("#status .badge")).to_have_text("done")
        expect(page.locator("#cancel")).to_be_disabled()
        expect(page.locator("#restart")).to_be_disabled()  # a done reindex is not restarted
        expect(page.locator("#progress-text")).to_contain_text("20 / 20 items")
        expect(figure(page, "mode")).to_have_text("full")
        expect(figure(page, "items")).to_have_text("20")
        expect(figure(page, "encoded")).to_have_text(str(metrics["encoded"]))
        expect(figure(page, "reused")).to_have_text(str(metrics["reused"]))
        expect(figure(page, "written")).to_have_text("20")
        expect(figure(page, "collection")).to_have_text(metrics["collection"])
        expect(figure(page, "sink")).to_have_text("parquet · catalogue")
        for timing in ("encode s", "write s", "switch s", "items/s (whole run)",
                       "items/s (encode)"):
            expect(figure(page, timing)).to_have_count(1)
        expect(page.locator("#facts")).to_contain_text(model_id)
        expect(page.locator("#events tr[data-kind='switch']")).to_have_count(1)
        expect(page.locator("#events")).to_contain_text("processing → done")

        box = page.locator("#search-section")
        expect(box).to_be_visible()
        box.locator(".search-query").fill("blue silk tie")
        box.locator(".search-k").fill("3")
        box.get_by_role("button", name="Search").click()
        hits = box.locator(".search-hits tbody tr")
        expect(hits).to_have_count(3)
        expect(hits.first).to_have_attribute("data-object-id", "item-12")
        expect(hits.first.locator("td").nth(0)).to_have_text("1")
        expect(hits.first.locator("td").nth(1)).to_have_text("item-12")
        # by model: its newest complete collection, the incremental run's
        newest_collection = wait_done(api, again["id"])["metrics"]["collection"]
        served = box.locator(".search-served")
        expect(served).to_contain_text(newest_collection)
        expect(served).to_contain_text(model_id)
        expect(served).to_contain_text("parquet · catalogue")
        screenshot(page, "reindex-task-done")

        # a sink that cannot be read: the API's detail shows inline, as text
        page.route("**/api/v1/search", lambda route: route.fulfill(
            status=503, json={"detail": f"sink down {HOSTILE}"}))
        box.get_by_role("button", name="Search").click()
        expect(box.locator(".search-error")).to_have_text(
            f"Search failed: 503 sink down {HOSTILE}")
        assert page.locator("#app img").count() == 0, "API text must never become markup"


def test_a_running_reindex_shows_its_progress_and_eta(
    serve: Callable[..., str], page: Any
) -> None:
    """Mid-run figures as a worker reports them, served by rewriting the live API's answers
    (a real run of 20 items is over before a page could see it)."""
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as api:
        task = create_reindex(api, register_model(api))
    running = {"status": "processing", "detail": HOSTILE, "progress": {
        "fraction": 40 / 120, "step": 40, "total_steps": 120, "message": "encode",
        "eta_s": 3.4, "items_per_s": 35.2}}

    def rewrite(route: Any) -> None:
        answer = route.fetch().json()
        body = [{**t, **running} for t in answer] if isinstance(answer, list) else {
            **answer, **running}
        route.fulfill(json=body, headers={"X-Total-Count": "1"})

    page.route(f"**{REINDEX}?*", rewrite)
    page.route(f"**{REINDEX}/{task['id']}", rewrite)
    page.goto(f"{url}/#/reindex")
    row = page.locator(f"#reindex-tasks tr[data-id='{task['id']}']")
    expect(row.locator(".badge")).to_have_text("processing")
    expect(row.locator(".progress-note")).to_have_text("40 / 120 · ETA 3s")
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "33")
    expect(row.locator("td.counts")).to_have_text("—")

    page.goto(f"{url}/#/reindex/{task['id']}")
    expect(page.locator("#progress-text")).to_have_text(
        "40 / 120 items · encode · 35.2 items/s · ETA 3s")
    expect(page.locator("#detail pre")).to_have_text(HOSTILE)
    expect(page.locator("#metrics")).to_contain_text("Figures come when the run is done.")
    expect(page.locator("#search-section")).to_be_hidden()  # only a done task is searched
    assert page.locator("#app img").count() == 0, "API text must never become markup"


def test_cancel_a_waiting_reindex_and_page_through_the_list(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve(run_worker=False)  # no worker: the tasks stay pending
    with httpx.Client(base_url=url) as api:
        model_id = register_model(api)
        ids = [create_reindex(api, model_id)["id"] for _ in range(25)]

        page.goto(f"{url}/#/reindex/{ids[0]}")
        badge = page.locator("#status .badge")
        expect(badge).to_have_text("pending")
        expect(page.locator("#progress-text")).to_have_text("waiting for a worker")
        expect(page.locator("#cancel")).to_be_enabled()
        page.locator("#cancel").click()
        expect(badge).to_have_text("canceled")
        expect(page.locator("#action-error")).to_be_empty()
        assert api.get(f"{REINDEX}/{ids[0]}").json()["status"] == "canceled"
        expect(page.locator("#cancel")).to_be_disabled()
        expect(page.locator("#restart")).to_be_enabled()
        expect(page.locator("#events")).to_contain_text("pending → canceled")
        screenshot(page, "reindex-task-canceled")

        page.locator(".crumbs a").click()
        count, rows = page.locator("#count"), page.locator("#reindex-tasks tbody tr")
        expect(count).to_have_text(shown(1, 20, 25))
        expect(rows).to_have_count(20)
        expect(rows.first).to_have_attribute("data-id", ids[-1])  # newest first
        page.locator("#next").click()
        expect(count).to_have_text(shown(21, 25, 25))
        expect(rows.last).to_have_attribute("data-id", ids[0])
        page.locator("#status-filter").select_option("canceled")
        expect(count).to_have_text(shown(1, 1, 1))
        expect(rows.locator(".badge")).to_have_text(["canceled"])


def aliases_serve(api: httpx.Client) -> bool:
    """Whether this server's aliases carry a sink and what it serves (a later addition)."""
    return "serving" in api.get("/api/v1/aliases").json()[0]


def test_aliases_page_shows_a_reindexing_sink_and_links_its_task(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve(run_worker=False)  # the alias's reindex waits for a worker that never comes
    with httpx.Client(base_url=url) as api:
        model_id = register_model(api)
        body = {"model_id": model_id, "sink": {"type": "parquet", "name": "shop"}}
        assert api.put("/api/v1/aliases/production", json=body).status_code == 200
        assert api.put("/api/v1/aliases/staging", json={"model_id": model_id}).status_code == 200
        if not aliases_serve(api):
            pytest.skip("this server's aliases have no `serving` yet")
        task_id = api.get("/api/v1/aliases/production").json()["serving"]["reindex_task_id"]

    page.goto(f"{url}/#/aliases")
    row = page.locator("#aliases tr[data-alias='production']")
    expect(row.locator(".badge.serving")).to_have_text("reindexing")
    expect(page.locator(".alias-sink[data-alias='production'] .sink")).to_have_text(
        "parquet · shop")
    expect(page.locator("#aliases tr[data-alias='staging'] .badge.serving")).to_have_text(
        "no sink")
    expect(page.locator(".alias-sink[data-alias='staging'] .sink")).to_have_text("none")
    expect(page.locator("details.alias-search[data-alias='staging']")).to_have_count(0)
    screenshot(page, "aliases-reindexing")
    row.locator("a.serving-link").click()
    expect(page).to_have_url(f"{url}/#/reindex/{task_id}")
    expect(page.locator("#status .badge")).to_have_text("pending")
    expect(page.locator("#facts")).to_contain_text("production")


def test_aliases_page_shows_a_live_sink_and_searches_it(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve()
    with httpx.Client(base_url=url) as api:
        model_id = register_model(api)
        upsert_items(api)
        body = {"model_id": model_id, "sink": {"type": "parquet"}}
        assert api.put("/api/v1/aliases/production", json=body).status_code == 200
        if not aliases_serve(api):
            pytest.skip("this server's aliases have no `serving` yet")

        page.goto(f"{url}/#/aliases")
        row = page.locator("#aliases tr[data-alias='production']")
        # the page polls while the sink is reindexing, then shows it live
        expect(row.locator(".badge.serving")).to_have_text("live", timeout=120_000)
        serving = api.get("/api/v1/aliases/production").json()["serving"]
    line = page.locator(".alias-sink[data-alias='production']")
    expect(line).to_contain_text(serving["collection"])
    expect(line.locator(".sink")).to_have_text("parquet · catalogue")
    search = page.locator("details.alias-search[data-alias='production']")
    search.locator("summary").click()
    search.locator(".search-query").fill("red wool scarf")
    search.get_by_role("button", name="Search").click()
    expect(search.locator(".search-hits tbody tr").first).to_have_attribute(
        "data-object-id", "item-00")
    expect(search.locator(".search-served")).to_contain_text(serving["collection"])
    screenshot(page, "aliases-live")


def test_the_reindex_script_is_served_like_the_others(serve: Callable[..., str]) -> None:
    """`reindex.js` is in the dashboard's list of files (embtune/web/routes.py `ASSETS`)."""
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as client:
        response = client.get("/static/reindex.js")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "export function reindexPage" in response.text
