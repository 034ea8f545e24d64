"""The search spec is validated before anything is stored, naming `params.search...`."""

from __future__ import annotations

from typing import Any

import pytest

from embtune.errors import InvalidParams
from embtune.schemas.search import check_space
from embtune.schemas.task_policy import split_policy
from embtune.training.params import SentenceTransformerParams

SPACE = {"learning_rate": {"type": "float", "low": 1e-5, "high": 3e-4, "log": True}}


def _error_locs(params: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidParams) as caught:
        policy, method = split_policy(params)
        check_space(policy.search, SentenceTransformerParams, method)
    return [".".join(map(str, e["loc"][1:])) for e in caught.value.errors]


def test_a_valid_spec_is_split_off_the_method_params() -> None:
    policy, method = split_policy({"epochs": 1, "search": {"trials": 3, "space": SPACE}})
    assert method == {"epochs": 1}
    assert policy.search is not None and policy.search.trials == 3
    assert policy.search.metric == "ndcg@10" and policy.search.pruner == "median"
    check_space(policy.search, SentenceTransformerParams, method)


@pytest.mark.parametrize(
    ("search", "named"),
    [
        ({"trials": 0, "space": SPACE}, "params.search.trials"),
        ({"trials": 101, "space": SPACE}, "params.search.trials"),
        ({"trials": 2, "metric": "accuracy", "space": SPACE}, "params.search.metric"),
        ({"trials": 2, "space": {"seed": {"type": "int", "low": 0, "high": 3}}},
         "params.search.space.seed"),
        ({"trials": 2, "space": {}}, "params.search.space"),
        ({"trials": 2, "space": {"epochs": {"type": "float", "low": 1, "high": 2}}},
         "params.search.space.epochs"),
        ({"trials": 2, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-4}}},
         "params.search.space.learning_rate"),
        ({"trials": 2, "space": {"learning_rate": {"type": "float", "low": 0, "high": 1e-4,
                                                   "log": True}}},
         "params.search.space.learning_rate"),
        ({"trials": 2, "space": {"batch_size": {"type": "categorical", "choices": []}}},
         "params.search.space.batch_size"),
        ({"trials": 2, "space": SPACE, "pruner": "hyperband"}, "params.search.pruner"),
    ],
)
def test_a_bad_spec_names_its_field(search: dict[str, Any], named: str) -> None:
    assert any(loc.startswith(named) for loc in _error_locs({"search": search}))


def test_bounds_outside_the_methods_own_ranges_are_named() -> None:
    space = {"learning_rate": {"type": "float", "low": 1e-5, "high": 0.5},
             "batch_size": {"type": "categorical", "choices": [16, 1]}}
    locs = _error_locs({"search": {"trials": 2, "space": space}})
    assert locs == ["params.search.space.learning_rate.high",
                    "params.search.space.batch_size.choices.1"]
