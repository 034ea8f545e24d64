"""What a finished run's verdict does: one `verdict` event, and — when the task asked for it —
the promotion of the tuned model to an alias, in the caller's transaction.

The runner calls `settle` inside the transaction that registers the tuned model and marks the
task done, so the verdict, the alias change and "done" are committed together or not at all: a
run that lost its task (canceled at the last moment) promotes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from embtune.domain.aliases import AliasAction
from embtune.domain.tasks import TaskEventKind
from embtune.schemas.task_policy import TaskPolicy
from embtune.storage.aliases_repo import AliasRepository
from embtune.storage.tasks_repo import TaskRepository


def promotion_decision(policy: TaskPolicy, verdict: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether to promote, and why, in words that go into the task's history."""
    name = verdict.get("verdict") if verdict else None
    if policy.promote_if == "always":
        return True, f"promote_if=always (verdict: {name or 'none'})"
    if name == "better":
        return True, "the verdict is better"
    if name is None:
        return False, "no verdict was reached, and promote_if=better needs a better one"
    return False, f"the verdict is {name}, and promote_if=better needs a better one"


class Promotion:
    def __init__(self, tasks: TaskRepository, aliases: AliasRepository) -> None:
        self.tasks = tasks
        self.aliases = aliases

    def settle(
        self,
        session: Session,
        task_id: str,
        model_id: str,
        policy: TaskPolicy,
        metrics: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Record the verdict and act on it; the promotion record for the task's metrics, or
        None when the task did not ask to promote."""
        verdict = metrics.get("verdict")
        if isinstance(verdict, dict) and verdict.get("reason"):
            self.tasks.add_event(
                session, task_id, TaskEventKind.verdict, None, None, str(verdict["reason"])
            )
        if policy.promote_to is None:
            return None
        promote, why = promotion_decision(policy, verdict if isinstance(verdict, dict) else None)
        record: dict[str, Any] = {
            "alias": policy.promote_to,
            "promote_if": policy.promote_if,
            "promoted": promote,
            "reason": why,
        }
        if promote:
            change = self.aliases.point(
                session,
                policy.promote_to,
                model_id,
                action=AliasAction.promote,
                actor=f"task:{task_id}",
                reason=why,
            )
            record["version"] = change.version
            record["previous_model_id"] = change.previous_model_id
            message = (
                f"promoted model {model_id} to alias {policy.promote_to!r} "
                f"(version {change.version}): {why}"
            )
        else:
            message = f"not promoted to alias {policy.promote_to!r}: {why}"
        self.tasks.add_event(session, task_id, TaskEventKind.promotion, None, None, message)
        return record
