"""Free-form JSON fields (task `params`/`metadata`, item `meta`, a result's `meta`, a session's
`search_meta`) are bounded in depth and size at the schema: 422 naming the field, nothing
stored. Whatever the API accepts there it can return: before the bound, JSON ~255 levels deep
was stored and then every list holding it answered 500."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embtune.schemas.json_object import MAX_JSON_BYTES, MAX_JSON_DEPTH
from tests.conftest import register_model

TASKS = "/api/v1/fine-tuning/task"
ITEMS = "/api/v1/items"
SESSION = "/api/v1/clickstream/session"


def nested(depth: int, leaf: Any = 1, kinds: str = "d") -> dict[str, Any]:
    """A JSON object `depth` levels deep (itself level 1), alternating object/array per
    `kinds` ("d" object, "l" array), built without recursion."""
    value = leaf
    for level in range(depth - 1, 0, -1):
        value = {"k": value} if kinds[level % len(kinds)] == "d" else [value]
    return {"k": value}


def raw_nested(depth: int) -> str:
    """The same as JSON text, for depths Python's json encoder cannot reach."""
    return '{"k":' * depth + "1" + "}" * depth


class Fields:
    """Posts one value into each free-form field, and reads back what was stored."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.model = register_model(client)
        self.ids = itertools.count()

    def post(self, field: str, value_json: str) -> tuple[Any, Callable[[], Any]]:
        """The response, and a function returning the stored value."""
        n = next(self.ids)
        if field in ("params", "metadata"):
            body = f'{{"embedding_model_id": "{self.model}", "{field}": {value_json}}}'
            response = self._post(TASKS, body)

            def stored() -> Any:
                return self.client.get(f"{TASKS}/{response.json()['id']}").json()[field]

            return response, stored
        if field == "item meta":
            body = f'{{"items": [{{"object_id": "o{n}", "text": "t", "meta": {value_json}}}]}}'
            return self._post(ITEMS, body), lambda: self.client.get(f"{ITEMS}/o{n}").json()["meta"]
        result = f'{{"object_id": "o", "meta": {value_json}}}' if field == "result meta" else (
            '{"object_id": "o"}')
        search_meta = f', "search_meta": {value_json}' if field == "search_meta" else ""
        body = (f'{{"session_id": "s{n}", "search_query": "q", "search_results": [{result}]'
                f"{search_meta}}}")
        response = self._post(SESSION, body)

        def stored_session() -> Any:
            session = self.client.get(f"{SESSION}/s{n}").json()
            if field == "search_meta":
                return session["search_meta"]
            return session["search_results"][0]["meta"]

        return response, stored_session

    def _post(self, path: str, body: str) -> Any:
        return self.client.post(path, content=body.encode(),
                                headers={"content-type": "application/json"})

    def lists_work(self) -> None:
        for path in (TASKS, ITEMS):
            response = self.client.get(path, params={"limit": 1000})
            assert response.status_code == 200, (path, response.text)


FIELDS = ("params", "metadata", "item meta", "result meta", "search_meta")
LOC = {"params": ["body", "params"], "metadata": ["body", "metadata"],
       "item meta": ["body", "items", 0, "meta"],
       "result meta": ["body", "search_results", 0, "meta"],
       "search_meta": ["body", "search_meta"]}


# `params` are also validated by the plugin's own model and stored normalized (defaults filled
# in), so only the bound is checked for them, not the round trip.
RETURNED = tuple(f for f in FIELDS if f != "params")


@pytest.fixture
def fields(client_factory: Callable[..., TestClient]) -> Fields:
    return Fields(client_factory(run_worker=False))  # tasks stay pending


@pytest.mark.backends("sqlite-embedded")
def test_too_deep_or_too_large_json_is_422_naming_the_field_and_nothing_is_stored(
    fields: Fields,
) -> None:
    for field in FIELDS:
        for depth, kinds in ((MAX_JSON_DEPTH + 1, "d"), (MAX_JSON_DEPTH + 1, "dl"), (300, "d")):
            value = json.dumps(nested(depth, kinds=kinds)) if depth < 500 else raw_nested(depth)
            response, _ = fields.post(field, value)
            assert response.status_code == 422, (field, depth, response.text)
            (error,) = response.json()["detail"]
            assert error["loc"] == LOC[field] and error["type"] == "json_too_deep", error
            assert str(MAX_JSON_DEPTH) in error["msg"]
        big = json.dumps({"text": "é" * (MAX_JSON_BYTES // 2)})  # over the bound in UTF-8 bytes
        response, _ = fields.post(field, big)
        assert response.status_code == 422, (field, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"] == LOC[field] and error["type"] == "json_too_large", error
        # Deeper than Python's JSON parser goes: refused before validation, still a 4xx.
        response, _ = fields.post(field, raw_nested(100_000))
        assert response.status_code == 400, (field, response.text)
        assert "traceback" not in response.text.lower()
    tasks = fields.client.get(TASKS).json()
    assert tasks == [] and fields.client.get(ITEMS).json() == []
    fields.lists_work()


@pytest.mark.backends("sqlite-embedded")
def test_json_at_the_bounds_is_stored_and_returned(fields: Fields) -> None:
    at_depth = nested(MAX_JSON_DEPTH - 1, leaf=[], kinds="dl")  # the empty array: level 32
    fits = {"text": "x" * (MAX_JSON_BYTES - len('{"text":""}'))}
    assert len(json.dumps(fits, separators=(",", ":")).encode()) == MAX_JSON_BYTES
    for field in RETURNED:
        for value in (at_depth, fits):
            response, stored = fields.post(field, json.dumps(value))
            assert response.status_code in (200, 201), (field, response.text)
            assert stored() == value
    fields.lists_work()


# -- property: whatever is accepted is returned, on every backend -------------------------------
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                    st.floats(allow_nan=False, allow_infinity=False), text)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
deep_objects = st.builds(
    lambda depth, leaf, kinds: nested(depth, leaf, kinds),
    st.one_of(st.integers(1, MAX_JSON_DEPTH + 4), st.integers(250, 400)),  # 255+ broke reads
    values,
    st.text(alphabet="dl", min_size=1, max_size=3),
)
free_form = st.one_of(st.dictionaries(text, values, max_size=4), deep_objects)


@given(data=st.data())
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_whatever_a_json_field_accepts_it_returns(fields: Fields, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(RETURNED))
    value = data.draw(free_form)
    response, stored = fields.post(field, json.dumps(value))
    if response.status_code in (200, 201):
        assert stored() == value
    else:
        assert response.status_code == 422, response.text
        assert any(error["loc"] == LOC[field] for error in response.json()["detail"])
    fields.lists_work()
