"""Schemathesis over every operation of the OpenAPI spec: no 5xx, and every answer (status code,
content type, body) is one the spec documents.

The app runs in-process on SQLite + the embedded broker with no worker, so generated tasks stay
pending and nothing trains. A few resources are seeded first, and path parameters (and the ids
inside some bodies) are sometimes swapped for a seeded id, so the fuzzer also reaches the
"found" branches and not only the 404s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from embtune.api.app import create_app
from tests.conftest import make_settings
from tests.support.backends import Backend

pytestmark = pytest.mark.backends("sqlite-embedded")

MODELS = "/api/v1/embedding-models"
TASKS = "/api/v1/fine-tuning/task"
CLICKSTREAM = "/api/v1/clickstream"

# Both load real weights (an archive of the base model, or the model itself): seconds per case.
# Their error paths are checked once below instead.
SLOW = r"/embedding-models/\{model_id\}/(embed|download)$"


def _seed(client: asgi.ASGIClient) -> dict[str, list[str]]:
    """A little of everything; returns the ids per path-parameter name."""

    def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = client.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()

    model = post(MODELS, {"name": "mini", "plugin_name": "sleepy",
                          "source": "builtin:all-MiniLM-L6-v2"})["id"]
    frozen = post(MODELS, {"name": "frozen", "plugin_name": "frozen",
                           "source": "builtin:all-MiniLM-L6-v2"})["id"]
    pending = post(TASKS, {"embedding_model_id": model, "idempotency_key": "k1"})["id"]
    canceled = post(TASKS, {"embedding_model_id": model})["id"]
    assert client.put(f"{TASKS}/{canceled}/cancel").status_code == 200
    post("/api/v1/items", {"items": [{"object_id": "a", "text": "alpha"},
                                     {"object_id": "b/1", "text": "beta"}]})
    post(f"{CLICKSTREAM}/session", {"session_id": "s1", "search_query": "red shoes",
                                    "search_results": [{"object_id": "a"}, {"object_id": "b/1"}]})
    released = post(f"{CLICKSTREAM}/batch/release")["id"]
    hook = post("/api/v1/webhooks", {"url": "https://93.184.216.34/hooks",
                                     "events": ["task.done"]})["id"]
    post(f"{CLICKSTREAM}/session", {"session_id": "s2", "search_query": "blue",
                                    "search_results": [{"object_id": "a"}]})
    return {
        "model_id": [model, frozen],
        "embedding_model_id": [model, frozen],
        "task_id": [pending, canceled],
        "object_id": ["a", "b/1"],
        "session_id": ["s1", "s2"],
        "batch_id": [released],
        "endpoint_id": [hook],
    }


def _point_at_seeded(value: Any, draw: Callable[..., Any], seeded: dict[str, list[str]]) -> None:
    """Swap some generated ids (at any depth) for seeded ones, in place."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in seeded and isinstance(item, str) and draw(st.booleans()):
                value[key] = draw(st.sampled_from(seeded[key]))
            else:
                _point_at_seeded(item, draw, seeded)
    elif isinstance(value, list):
        for item in value:
            _point_at_seeded(item, draw, seeded)


@st.composite
def _sometimes_seeded(
    draw: Callable[..., Any], case: schemathesis.Case, seeded: dict[str, list[str]]
) -> schemathesis.Case:
    # Only valid cases: a swapped id could repair a deliberately invalid one.
    if case.meta is not None and case.meta.generation.mode.is_positive:
        _point_at_seeded(case.path_parameters, draw, seeded)
        _point_at_seeded(case.body, draw, seeded)
    return case


# Rules no JSON schema can state, checked against the database or by the plugin's own params
# model: a schema-valid request may rightly get the documented 400 or 422 there, so the
# `positive_data_acceptance` check is waived for those answers only (their bodies are still
# checked against the spec).
BUSINESS_RULES = {
    "POST /api/v1/embedding-models": "the plugin is installed; the source is a model directory "
                                    "in the roots, clear of what embtune writes",
    "POST /api/v1/fine-tuning/task": "the model's plugin can fine-tune and accepts the params",
    "POST /api/v1/fine-tuning/task/preflight": "as for POST /task",
    "PUT /api/v1/aliases/{name}": "the model exists; the sink config is one its sink type "
                                  "accepts",
    "PUT /api/v1/aliases/{name}/sink": "the sink config is one its sink type accepts",
    "POST /api/v1/reindex/task": "the sink config is one its sink type accepts",
    "POST /api/v1/items": "object ids are unique within one request",
    "POST /api/v1/clickstream/session": "result object ids are unique within the session",
    "POST /api/v1/clickstream/session/events": "events name objects the session showed",
    "POST /api/v1/imports": "the file exists; a local one lies under the data dir or the "
                            "import roots",
    "POST /api/v1/webhooks": "the URL has no credentials and a valid port and, unless "
                             "private receivers are allowed, names a public address; the "
                             "secret decodes to 24 to 64 bytes",
    "PATCH /api/v1/webhooks/{endpoint_id}": "the URL, as for POST /webhooks",
    "POST /api/v1/evaluation-sets": "judged items are in the catalogue; query ids are unique "
                                    "within the set and object ids within a query; each query "
                                    "has an item graded above 0",
}


@pytest.fixture
def api_schema(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[schemathesis.BaseSchema]:
    # schemathesis 4.32's `from_fixture` renames the test through `node._nodeid`, which pytest 9
    # no longer has; give it one to write to (the reported id simply stays the test's own).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    app = create_app(make_settings(backend, tmp_path / "data"), run_worker=False)
    # Schemathesis starts the app's lifespan itself (and ends it after the test): starting it
    # through another client too would build a second runtime on the same database.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    with asgi.get_client(app) as client:
        seeded = _seed(client)

    # A hook rather than `@schema.given(data=…)`, which would switch off the coverage phase
    # (boundary values, missing fields, unsupported methods).
    @schema.hook
    def before_generate_case(_: Any, strategy: st.SearchStrategy) -> st.SearchStrategy:
        return strategy.flatmap(lambda case: _sometimes_seeded(case, seeded))

    yield schema
    asgi.shutdown_lifespans()


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=SLOW)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    response = case.call()
    waived = []
    if case.operation.label in BUSINESS_RULES and response.status_code in (400, 422):
        waived = [schemathesis.checks.positive_data_acceptance]
    case.validate_response(response, excluded_checks=waived)


@pytest.mark.parametrize("method,suffix", [("POST", "embed"), ("GET", "download")])
def test_slow_model_operations_document_their_404(
    api_schema: schemathesis.BaseSchema, method: str, suffix: str
) -> None:
    # Never reached with a real model here: that would load or archive its weights.
    operation = api_schema[f"{MODELS}/{{model_id}}/{suffix}"][method]
    extra = {"body": {"texts": ["hello"]}} if method == "POST" else {}
    case = operation.Case(path_parameters={"model_id": "missing"}, **extra)
    response = case.call_and_validate()
    assert response.status_code == 404
