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
    expect(page.locator("#metrics h3").first).to_have_text("Validation sessions")
    expect(page.locator("#verdict")).to_have_count(0)  # an old task reached no verdict
    expect(page.locator("#promotion")).to_have_count(0)
    screenshot(page, "task-report")


FOUR = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
BIASED = "favours the source model: clicks exist only where it showed the item"


def click_figures(verdict: str, delta: float, ci: list[float]) -> dict[str, Any]:
    """The `clicks` block of a verdict task's metrics (issue 12's report contract)."""
    return {
        "split": "query",
        "shown_lists": {
            "metric": "click_dcg@10", "before": 0.2, "after": 0.2 + delta, "delta": delta,
            "ci95": ci, "queries": 25, "sessions": 150,
            "propensities": {"source": "prior", "method": "1/rank",
                             "examination": [1.0, 0.5, 0.33], "alpha": [0.9, 0.8, 0.7],
                             "beta": [0.1, 0.1, 0.1], "reason": "too few sessions to estimate"},
        },
        "full_catalogue": {
            "before": dict.fromkeys(FOUR, 0.3), "after": dict.fromkeys(FOUR, 0.32),
            "delta": dict.fromkeys(FOUR, 0.02), "ci95": {key: [-0.01, 0.05] for key in FOUR},
            "note": BIASED,
        },
    }


def serve_report(page: Any, task_id: str, metrics: dict[str, Any],
                 events: list[dict[str, Any]] | None = None) -> None:
    """Rewrite the live API's answers for one task in the browser: done, with these metrics
    (and these extra events), as a finished run would report them."""

    def task(route: Any) -> None:
        route.fulfill(json={**route.fetch().json(), "status": "done", "metrics": metrics})

    def history(route: Any) -> None:
        route.fulfill(json=[*route.fetch().json(), *(events or [])])

    page.route(f"**/api/v1/fine-tuning/task/{task_id}", task)
    page.route(f"**/api/v1/fine-tuning/task/{task_id}/events", history)


def test_task_page_leads_with_a_judged_verdict_and_its_promotion(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as api:
        task_id = create_task(api, register_model(api))
    hostile = "<img src=x onerror=alert(1)> golden"
    before, after = dict.fromkeys(FOUR, 0.4), dict.fromkeys(FOUR, 0.781)
    delta = dict.fromkeys(FOUR, 0.381)
    judged_set = {"id": "es_1", "name": hostile}
    metrics = {
        "before": before, "after": after, "delta": delta,
        "per_query": {"better": 40, "worse": 3, "same": 17, "worst_regressions": []},
        "verdict": {"verdict": "better", "basis": "judged", "metric": "ndcg@10", "before": 0.4,
                    "after": 0.781, "delta": 0.381, "ci95": [0.301, 0.452], "queries": 60,
                    "evaluation_set": judged_set,
                    "reason": "judged NDCG@10 +0.381 [+0.301, +0.452] over 60 queries: better"},
        "judged": {"evaluation_set": judged_set, "queries": 60, "before": before,
                   "queries_without_catalogued_items": 2,
                   "after": after, "delta": delta,
                   "ci95": {name: [0.301, 0.452] for name in FOUR}},
        "clicks": click_figures("better", 0.04, [0.01, 0.07]),
        "promotion": {"alias": "production", "promote_if": "better", "promoted": True,
                      "reason": "verdict better"},
    }
    events = [
        {"id": 900, "kind": "verdict", "from_status": None, "to_status": None,
         "message": metrics["verdict"]["reason"], "created_at": "2026-12-01T06:00:00Z"},
        {"id": 901, "kind": "promotion", "from_status": None, "to_status": None,
         "message": "production → tuned model", "created_at": "2026-12-01T06:00:01Z"},
    ]
    serve_report(page, task_id, metrics, events)
    page.goto(f"{url}/#/task/{task_id}")
    verdict = page.locator("#metrics #verdict")
    expect(verdict.locator(".badge")).to_have_text("better")
    expect(verdict.locator(".badge")).to_have_class("badge better")
    expect(verdict.locator(".verdict-metric")).to_have_text("ndcg@10")
    expect(verdict.locator(".verdict-delta")).to_have_text("+0.3810")
    expect(verdict.locator(".verdict-delta")).to_have_class("verdict-delta good")
    expect(verdict.locator(".verdict-ci")).to_have_text("95% [+0.3010, +0.4520]")
    expect(verdict).to_contain_text(f"judged set {hostile}")
    expect(verdict).to_contain_text("60")
    expect(verdict.locator("#propensities")).to_have_count(0)  # judged: no click weights
    # the verdict comes first in the Metrics section, then the promotion
    first = page.locator("#metrics > *").first
    expect(first).to_have_id("verdict")
    expect(page.locator("#promotion")).to_have_text(
        "Promoted to production (promote if better): verdict better")
    expect(page.locator("#promotion a")).to_have_attribute("href", "#/aliases")
    ndcg = page.locator("#judged-table tr[data-metric='ndcg@10'] td")
    expect(ndcg).to_have_text(["0.4000", "0.7810", "+0.3810", "[+0.3010, +0.4520]"])
    expect(page.locator("#metrics")).to_contain_text(f"Judged set: {hostile} · 60 queries")
    shown = page.locator("#click-table tr.debiased td")
    expect(shown).to_have_text(["0.2000", "0.2400", "+0.0400", "[+0.0100, +0.0700]"])
    expect(page.locator("#click-table tr.biased")).to_have_count(4)
    expect(page.locator("#click-table tr.biased td.ci").first).to_have_text("[-0.0100, +0.0500]")
    expect(page.locator("#metrics")).to_contain_text(
        "2 judged queries were left out: none of their relevant items is in the catalogue.")
    expect(page.locator("#metrics")).to_contain_text(f"* full catalogue: {BIASED}")
    expect(page.locator("#per-query")).to_contain_text("Per query (judged set)")
    expect(page.locator("#metrics-table")).to_have_count(0)  # no figure shown twice
    assert page.locator("#app img").count() == 0, "API text must never become markup"
    outcome = page.locator("#events tr.outcome")
    expect(outcome).to_have_count(2)
    expect(outcome.first.locator(".kind")).to_have_text("promotion")  # newest first
    expect(page.locator("#events tr[data-kind='verdict']")).to_contain_text("over 60 queries")
    screenshot(page, "task-verdict-judged")


def test_a_click_verdict_says_debiased_and_shows_its_propensities(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as api:
        task_id = create_task(api, register_model(api))
    clicks = click_figures("worse", -0.05, [-0.09, -0.01])
    full = clicks["full_catalogue"]
    metrics = {
        "before": full["before"], "after": full["after"], "delta": full["delta"],
        "verdict": {"verdict": "worse", "basis": "clicks", "metric": "click_dcg@10",
                    "before": 0.2, "after": 0.15, "delta": -0.05, "ci95": [-0.09, -0.01],
                    "queries": 25, "evaluation_set": None,
                    "reason": "click DCG@10 -0.050 over 25 queries: worse"},
        "clicks": clicks,
        "promotion": {"alias": "production", "promote_if": "better", "promoted": False,
                      "reason": "verdict worse, not better"},
    }
    serve_report(page, task_id, metrics)
    page.goto(f"{url}/#/task/{task_id}")
    verdict = page.locator("#verdict")
    expect(verdict.locator(".badge")).to_have_text("worse")
    expect(verdict.locator(".verdict-delta")).to_have_class("verdict-delta bad")
    expect(verdict).to_contain_text("clicks, debiased")
    details = verdict.locator("#propensities")
    expect(details.locator("summary")).to_have_text("Propensities: prior (1/rank)")
    expect(details.locator("table")).to_be_hidden()  # folded until asked for
    details.locator("summary").click()
    expect(details).to_contain_text("too few sessions to estimate")
    expect(details.locator("tbody tr").nth(1).locator("td")).to_have_text(
        ["2", "0.5", "0.8", "0.1"])
    expect(page.locator("#promotion")).to_have_text(
        "Not promoted to production (promote if better): verdict worse, not better")
    expect(page.locator("#judged-table")).to_have_count(0)
    expect(page.locator("#click-table tr.debiased td").nth(2)).to_have_text("-0.0500")
    screenshot(page, "task-verdict-clicks")


def test_a_verdict_without_evidence_shows_no_figures(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve(run_worker=False)
    with httpx.Client(base_url=url) as api:
        task_id = create_task(api, register_model(api))
    reason = "neither a judged set nor held-out sessions with shown results: nothing to decide on"
    metrics = {"verdict": {"verdict": "inconclusive", "basis": "none", "metric": None,
                           "reason": reason}, "clicks": {"split": "query"}}
    serve_report(page, task_id, metrics)
    page.goto(f"{url}/#/task/{task_id}")
    verdict = page.locator("#verdict")
    expect(verdict.locator(".badge")).to_have_text("inconclusive")
    expect(verdict).to_contain_text("no evidence to decide on")
    expect(verdict).to_contain_text(reason)
    expect(verdict.locator(".verdict-ci")).to_have_count(0)
    expect(verdict).not_to_contain_text("clicks, debiased")


def test_aliases_page_lists_aliases_and_opens_their_history(
    serve: Callable[..., str], page: Any
) -> None:
    url = serve(run_worker=False)
    hostile = "<img src=x onerror=alert(1)> launch"
    with httpx.Client(base_url=url) as api:
        first, second = register_model(api, "mini"), register_model(api, "mini-tuned")
        for model_id, reason in ((first, hostile), (second, "better on the judged set")):
            body = {"model_id": model_id, "reason": reason}
            assert api.put("/api/v1/aliases/production", json=body).status_code == 200
        assert api.put("/api/v1/aliases/staging", json={"model_id": first}).status_code == 200

    page.goto(f"{url}/#/aliases")
    expect(page.locator("nav a.active")).to_have_text("Aliases")
    expect(page.locator("#count")).to_have_text(shown(1, 2, 2))
    row = page.locator("#aliases tr[data-alias='production']")
    expect(row.locator("td")).to_have_count(5)
    expect(row.locator("td").nth(2)).to_have_text("2")  # version
    expect(row.locator("td").nth(3)).to_have_text("api")  # no token: anyone, as `api`
    expect(row.locator("td.model")).to_contain_text(f"mini-tuned {second}")
    details = page.locator("details.alias-history[data-alias='production']")
    expect(details.locator("table")).to_have_count(0)  # fetched when opened
    details.locator("summary").click()
    changes = details.locator("tbody tr")
    expect(changes).to_have_count(2)
    expect(changes.nth(0)).to_contain_text("better on the judged set")  # newest first
    expect(changes.nth(0).locator(".action")).to_have_text("set")
    expect(changes.nth(0).locator("td").nth(4)).to_contain_text(first)  # the previous model
    expect(changes.nth(1).locator("td").last).to_have_text(hostile)
    assert page.locator("#app img").count() == 0, "API text must never become markup"
    screenshot(page, "aliases")

    row.locator("td.model a").click()  # the model it points at, on its own page
    expect(page).to_have_url(f"{url}/#/model/{second}")
    expect(page.locator("h1")).to_contain_text("mini-tuned")
    expect(page.locator("#model-facts")).to_contain_text("sleepy")
    expect(page.locator("#model-lineage")).to_contain_text(second)
    screenshot(page, "model")


def test_aliases_page_without_the_aliases_api_says_so(
    serve: Callable[..., str], page: Any
) -> None:
    """A server from before the aliases API answers 404: the page explains, nothing breaks."""
    url = serve(run_worker=False)
    page.route("**/api/v1/aliases?*", lambda route: route.fulfill(
        status=404, json={"detail": "Not Found"}))
    page.goto(f"{url}/#/aliases")
    expect(page.locator("#aliases")).to_contain_text("This server has no aliases API yet.")
    expect(page.locator("#count")).to_have_text("0 of 0")
    expect(page.locator(".error[role=alert]")).to_be_empty()
    page.locator("nav a[data-page=tasks]").click()  # and the rest of the dashboard still works
    expect(page.locator("#count")).to_have_text("0 of 0")


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
        scripts = ("app.js", "dom.js", "nav.js", "report.js", "aliases.js")
        for path in ("/", "/static/app.css", *(f"/static/{name}" for name in scripts)):
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
