"""`embtune task restart` of a done task: one clear error naming the way to tune again."""

from __future__ import annotations

import pytest

from tests.integration.test_cli import assert_one_error_line, create, embtune, ok_json, register
from tests.integration.test_cli import url as url  # the live-server fixture

pytestmark = pytest.mark.backends("sqlite-embedded")


def test_restart_of_done_task_fails_with_the_tune_again_command(url: str) -> None:
    model_id = register(url)
    task_id = create(url, model_id, "--param", "steps=2")
    assert embtune(url, "task", "follow", task_id).exit_code == 0
    done = ok_json(embtune(url, "task", "show", task_id, "--json"))

    result = embtune(url, "task", "restart", task_id)
    assert_one_error_line(result, 1, "cannot be restarted", done["result_model_id"],
                          f"embtune task create {model_id}", '"steps":2')
    after = ok_json(embtune(url, "task", "show", task_id, "--json"))
    assert after["status"] == "done" and after["result_model_id"] == done["result_model_id"]
