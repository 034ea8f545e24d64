"""Task params the lifecycle reads rather than the method: which judged set decides the verdict,
whether a `better` verdict promotes the tuned model to an alias, and a hyperparameter search.

They travel in a task's `params` (as users expect: one bag of settings per task), but every
method would otherwise have to declare them; the service splits them off before the plugin
validates the rest, and validates them here, naming `params.<field>` when one is bad.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from embtune.domain.evaluation_sets import NAME_MAX_LENGTH, NAME_PATTERN
from embtune.errors import InvalidParams
from embtune.schemas.search import SearchSpec

POLICY_KEYS = ("evaluation_set_id", "promote_to", "promote_if", "search")
PromoteIf = Literal["better", "always"]


class TaskPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evaluation_set_id: str | None = Field(
        None,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=NAME_PATTERN,
        description="The judged evaluation set (id or name) that decides the verdict; "
        "default: the model's own default set, else the debiased click evaluation.",
    )
    promote_to: str | None = Field(
        None,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=NAME_PATTERN,
        description="Alias to point at the tuned model when the task is done (see promote_if).",
    )
    promote_if: PromoteIf | None = Field(
        None,
        description="`better` (default with promote_to): only on a `better` verdict; "
        "`always`: whatever the verdict.",
    )
    search: SearchSpec | None = Field(
        None,
        description="Run a hyperparameter search on the batch: `trials` trials sample `space`, "
        "the best one's model (by `metric`) is the task's result.",
    )

    @model_validator(mode="after")
    def _promote_if_needs_alias(self) -> TaskPolicy:
        if self.promote_if is not None and self.promote_to is None:
            raise ValueError("promote_if needs promote_to (the alias to promote to)")
        if self.promote_to is not None and self.promote_if is None:
            self.promote_if = "better"
        return self


def split_policy(params: Mapping[str, Any] | None) -> tuple[TaskPolicy, dict[str, Any]]:
    """(the validated policy, the method's own params); InvalidParams names `params.<field>`."""
    raw = dict(params or {})
    policy_raw = {key: raw.pop(key) for key in POLICY_KEYS if key in raw}
    try:
        policy = TaskPolicy.model_validate(policy_raw)
    except ValidationError as exc:
        # the cross-field check has no location of its own: it is about promote_if
        raise invalid_params(exc, "invalid task params", default_loc="promote_if") from None
    return policy, raw


def invalid_params(exc: ValidationError, prefix: str, default_loc: str = "") -> InvalidParams:
    """A validation error of some params as the API's 422: each error's location under
    `body.params`, and a message naming the fields. Shared by the task policy and every
    plugin's params model."""
    fallback = [default_loc] if default_loc else []
    errors = [
        {
            "loc": ["body", "params", *map(str, err["loc"] or fallback)],
            "msg": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]
    fields = ", ".join(".".join(e["loc"][1:]) for e in errors)
    return InvalidParams(f"{prefix}: {fields}", errors)


def merge_policy(policy: TaskPolicy, params: dict[str, Any]) -> dict[str, Any]:
    """The params as stored: the method's normalized params plus the policy keys that are set."""
    return {**params, **policy.model_dump(exclude_none=True)}
