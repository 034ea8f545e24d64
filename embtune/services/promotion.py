"""What a finished run's verdict does: one `verdict` event, and — when the task asked for it —
the promotion of the tuned model to an alias, in the caller's transaction.

The runner calls `settle` inside the transaction that registers the tuned model and marks the
task done, so the verdict, the alias change and "done" are committed together or not at all: a
run that lost its task (canceled at the last moment) promotes nothing. When the alias names a
vector sink, the reindex task that writes the promoted model into it is created in that same
transaction too; the runner sends its message after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from embtune.domain.aliases import AliasAction
from embtune.domain.tasks import TaskEventKind
from embtune.schemas.task_policy import TaskPolicy
from embtune.services.reindex import insert_reindex_task
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


@dataclass(frozen=True)
class Settled:
    # the promotion record for the task's metrics; None when the task did not ask to promote
    record: dict[str, Any] | None = None
    # (task id, message id) of the reindex task the promotion created, to send after commit
    reindex: tuple[str, str] | None = None


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
    ) -> Settled:
        """Record the verdict and act on it: the promotion record for the task's metrics, and
        the reindex task to send once the transaction commits."""
        verdict = metrics.get("verdict")
        if isinstance(verdict, dict) and verdict.get("reason"):
            self.tasks.add_event(
                session, task_id, TaskEventKind.verdict, None, None, str(verdict["reason"])
            )
        if policy.promote_to is None:
            return Settled()
        promote, why = promotion_decision(policy, verdict if isinstance(verdict, dict) else None)
        record: dict[str, Any] = {
            "alias": policy.promote_to,
            "promote_if": policy.promote_if,
            "promoted": promote,
            "reason": why,
        }
        reindex = None
        if promote:
            actor = f"task:{task_id}"
            change = self.aliases.point(
                session,
                policy.promote_to,
                model_id,
                action=AliasAction.promote,
                actor=actor,
                reason=why,
            )
            record["version"] = change.version
            record["previous_model_id"] = change.previous_model_id
            message = (
                f"promoted model {model_id} to alias {policy.promote_to!r} "
                f"(version {change.version}): {why}"
            )
            # read after the move: a sink set meanwhile is seen (its update went first)
            alias = self.aliases.get(session, policy.promote_to)
            if alias is not None and alias.sink is not None:
                created, _ = insert_reindex_task(
                    session, model_id=model_id, sink=alias.sink, incremental=False,
                    alias=policy.promote_to,
                    metadata={"alias_action": "promote", "alias_version": change.version,
                              "actor": actor},
                )
                assert created is not None and created.message_id is not None  # no key: new
                reindex = (created.id, created.message_id)
                record["reindex_task_id"] = created.id
                message += (
                    f"; reindex task {created.id} writes it into the alias's sink "
                    f"({alias.sink.get('type')} {alias.sink.get('name')!r})"
                )
        else:
            message = f"not promoted to alias {policy.promote_to!r}: {why}"
        self.tasks.add_event(session, task_id, TaskEventKind.promotion, None, None, message)
        return Settled(record, reindex)
