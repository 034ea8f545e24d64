"""The dashboard in a real browser against a live server (SQLite + embedded broker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import screenshot

try:
    from playwright.sync_api import expect
except ModuleNotFoundError:  # the `browser` fixture skips the browser tests
    expect = None

pytestmark = pytest.mark.backends("sqlite-embedded")


def shown(first: int, last: int, total: int) -> str:
    """The pager's "first to last of total" text (with an en dash, as the page shows it)."""
    return f"{first}\N{EN DASH}{last} of {total}"


def register_model(api: httpx.Client, name: str = "mini") -> str:
    body = {"name": name, "plugin_name": "sleepy", "source": "builtin:all-MiniLM-L6-v2"}
    response = api.post("/api/v1/embedding-models", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def create_task(api: httpx.Client, model_id: str, **params: Any) -> str:
    body = {"embedding_model_id": model_id, "params": params}
    response = api.post("/api/v1/fine-tuning/task", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_task_page_follows_a_run_to_done(serve: Callable[..., str], page: Any) -> None:
    url = serve()
    with httpx.Client(base_url=url) as api:
        model_id = register_model(api)
        task_id = create_task(api, model_id, steps=30, step_seconds=0.1)
        page.goto(f"{url}/#/task/{task_id}")
        badge = page.locator("#status .badge")
        expect(badge).to_have_text("processing")
        expect(page.locator("#progress-text")).to_contain_text("/ 30")
        expect(page.locator("#cancel")).to_be_enabled()
        expect(page.locator("#restart")).to_be_disabled()
        expect(badge).to_have_text("done", timeout=20_000)
        expect(page.locator("#progress [role=progressbar]")).to_have_attribute(
            "aria-valuenow", "100"
        )
        expect(page.locator("#metrics-json")).to_contain_text('"steps": 30')
        expect(page.locator("#cancel")).to_be_disabled()
        # a done task keeps its result: no restart, but "Tune again" (a new task)
        expect(page.locator("#restart")).to_be_disabled()
        expect(page.locator("#tune-again")).to_be_enabled()
        task = api.get(f"/api/v1/fine-tuning/task/{task_id}").json()
        expect(page.locator("#lineage")).to_contain_text(task["result_model_id"])
        expect(page.locator("#events")).to_contain_text("processing → done")
        screenshot(page, "task-done")

        # A cancel that the server refuses (the task is done) shows the API's detail inline.
        refusal = api.put(f"/api/v1/fine-tuning/task/{task_id}/cancel")
        assert refusal.status_code == 409
        page.locator("#cancel").evaluate("button => { button.disabled = false; }")
        page.locator("#cancel").click()
        expect(page.locator("#action-error")).to_contain_text(refusal.json()["detail"])

        page.goto(f"{url}/#/models")
        row = page.locator(f"#models tr[data-id='{task['result_model_id']}']")
        expect(row).to_contain_text("sleepy")
        expect(row).to_contain_text("mini")  # the parent, by name
        screenshot(page, "models")
        row.get_by_role("link", name=task_id).click()
        expect(page).to_have_url(f"{url}/#/task/{task_id}")
        expect(page.locator("#status .badge")).to_have_text("done")

        page.locator("#tune-again").click()
        expect(page).not_to_have_url(f"{url}/#/task/{task_id}")
        again_id = page.url.rsplit("/", 1)[1]
        again = api.get(f"/api/v1/fine-tuning/task/{again_id}").json()
        assert again["embedding_model_id"] == model_id
        assert again["params"] == task["params"] and again["batch_id"] == task["batch_id"]
        after = api.get(f"/api/v1/fine-tuning/task/{task_id}").json()
        assert after["status"] == "done"
        assert after["result_model_id"] == task["result_model_id"]
        api.put(f"/api/v1/fine-tuning/task/{again_id}/cancel")


def test_cancel_button_stops_a_running_task(serve: Callable[..., str], page: Any) -> None:
    url = serve()
    with httpx.Client(base_url=url) as api:
        task_id = create_task(api, register_model(api), steps=1000, step_seconds=0.1)
        page.goto(f"{url}/#/task/{task_id}")
        badge = page.locator("#status .badge")
        expect(badge).to_have_text("processing")
        expect(page.locator("#progress-text")).to_contain_text("step")
        page.locator("#cancel").click()
        expect(badge).to_have_text("canceled")
        expect(page.locator("#action-error")).to_be_empty()
        assert api.get(f"/api/v1/fine-tuning/task/{task_id}").json()["status"] == "canceled"
        expect(page.locator("#cancel")).to_be_disabled()
        expect(page.locator("#restart")).to_be_enabled()
        expect(page.locator("#tune-again")).to_be_hidden()
        screenshot(page, "task-canceled")

        # Restart asks first: dismissed, nothing happens; accepted, the task runs again.
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("#restart").click()
        assert api.get(f"/api/v1/fine-tuning/task/{task_id}").json()["status"] == "canceled"
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#restart").click()
        expect(badge).not_to_have_text("canceled")
        assert api.put(f"/api/v1/fine-tuning/task/{task_id}/cancel").status_code == 200


def test_task_table_filters_by_status_and_paginates(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as api:
        model_id = register_model(api)
        ids = [create_task(api, model_id) for _ in range(25)]
        for task_id in ids[:3]:
            assert api.put(f"/api/v1/fine-tuning/task/{task_id}/cancel").status_code == 200

        page.goto(f"{url}/")
        count, rows = page.locator("#count"), page.locator("#tasks tbody tr")
        expect(count).to_have_text(shown(1, 20, 25))
        expect(rows).to_have_count(20)
        expect(page.locator("#prev")).to_be_disabled()
        screenshot(page, "task-table")
        page.locator("#next").click()
        expect(count).to_have_text(shown(21, 25, 25))
        expect(rows).to_have_count(5)
        expect(page.locator("#next")).to_be_disabled()

        page.locator("#status-filter").select_option("canceled")
        expect(count).to_have_text(shown(1, 3, 3))
        expect(page.locator("#tasks .badge")).to_have_text(["canceled"] * 3)
        page.locator("#status-filter").select_option("pending")
        expect(count).to_have_text(shown(1, 20, 22))

        create_task(api, model_id)  # the table refreshes itself every 2 s
        expect(count).to_have_text(shown(1, 20, 23), timeout=5_000)


def test_task_page_renders_a_real_runs_report(serve: Callable[..., str], page: Any) -> None:
    """The task as a real fine-tuning run reports it (loss curve, before/after, per query),
    served by rewriting the live API response in the browser."""
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as api:
        task_id = create_task(api, register_model(api))
    hostile = "<img src=x onerror=alert(1)> kicks"
    report = {
        "status": "done",
        "progress": {
            "fraction": 1.0, "step": 40, "total_steps": 40, "message": "done", "epoch": 2,
            "loss_history": [[s, 2.0 / (1 + 0.2 * s)] for s in range(1, 41)],
        },
        "metrics": {
            "before": {"ndcg@10": 0.41, "mrr@10": 0.38, "recall@10": 0.55, "recall@100": 0.8},
            "after": {"ndcg@10": 0.62, "mrr@10": 0.57, "recall@10": 0.74, "recall@100": 0.79},
            "delta": {"ndcg@10": 0.21, "mrr@10": 0.19, "recall@10": 0.19, "recall@100": -0.01},
            "per_query": {
                "better": 31, "worse": 4, "same": 65,
                "worst_regressions": [
                    {"query": hostile, "rank_before": 1, "rank_after": 7},
                    {"query": "brolly", "rank_before": 2, "rank_after": None},
                ],
            },
            "data": {"train_pairs": 1200, "eval_queries": 100},
            "training": {"epochs": 2, "seconds": 41.5},
        },
    }

    def rewrite(route: Any) -> None:
        task = route.fetch().json()
        route.fulfill(json={**task, **report})

    page.route(f"**/api/v1/fine-tuning/task/{task_id}", rewrite)
    page.goto(f"{url}/#/task/{task_id}")
    expect(page.locator("#status .badge")).to_have_text("done")
    points = page.locator("#loss polyline").get_attribute("points")
    assert points is not None and len(points.split()) == 40
    ndcg = page.locator("#metrics-table tr[data-metric='ndcg@10'] td")
    expect(ndcg).to_have_text(["0.4100", "0.6200", "+0.2100"])
    expect(page.locator("#metrics-table tr[data-metric='recall@100'] td.bad")).to_have_text(
        "-0.0100"
    )
    per_query = page.locator("#per-query")
    expect(per_query).to_contain_text("31 better · 4 worse · 65 same")
    expect(per_query.locator("td", has_text="kicks")).to_have_text(hostile)
    expect(per_query).to_contain_text("not found")
    assert page.locator("#app img").count() == 0, "API text must never become markup"
    expect(page.locator("#metrics")).to_contain_text("train_pairs")
    screenshot(page, "task-report")


def test_dashboard_works_behind_the_api_token(serve: Callable[..., str], page: Any) -> None:
    token = "s3cret-token-0123456789"
    url = serve(run_worker=False, api_token=token)
    page.goto(f"{url}/")  # no session yet: the sign-in form (the token never goes in a URL)
    expect(page).to_have_url(f"{url}/login")
    page.fill("input[name=token]", "wrong-token-0123456789")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("That token is not valid.")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")  # sets an HttpOnly session cookie
    expect(page).to_have_url(f"{url}/")
    expect(page.locator("#count")).to_have_text("0 of 0")  # the API calls carry the cookie
    expect(page.locator("#tasks")).to_contain_text("No tasks.")


def test_dashboard_sends_security_headers(serve: Callable[..., str]) -> None:
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as client:
        for path in ("/", "/static/app.js", "/static/app.css"):
            response = client.get(path)
            assert response.status_code == 200, path
            headers = response.headers
            csp = headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp
            assert "default-src 'none'" in csp and "unsafe-inline" not in csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
        assert "<title>embtune</title>" in client.get("/").text
        assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
        missing = client.get("/static/../routes.py")
        assert missing.status_code == 404
        assert json.loads(client.get("/static/nope.js").text)["detail"]
