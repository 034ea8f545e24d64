"""`embtune serve` refuses to expose an unauthenticated API beyond this machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from embtune.cli import app as cli
from embtune.cli.server import check_bind, check_processes
from embtune.config import MIN_API_TOKEN_LENGTH, Settings

TOKEN = "s3cret-token-0123456789"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]",
             "::ffff:127.0.0.1"],
)
def test_loopback_needs_no_token(host: str) -> None:
    assert check_bind(host, token=None, insecure=False) is None


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "[::]", "10.1.2.3", "192.168.0.7", "fe80::1", "example.com",
             "localhost.example.com", "128.0.0.1"],
)
def test_other_addresses_need_a_token_or_insecure(host: str) -> None:
    refusal = check_bind(host, token=None, insecure=False)
    assert refusal is not None and host in refusal and "EMBTUNE_API_TOKEN" in refusal
    assert check_bind(host, token=TOKEN, insecure=False) is None
    assert check_bind(host, token=None, insecure=True) is None


def test_an_empty_token_is_no_token() -> None:
    # the app installs no auth for an empty token, so it must not unlock the bind either
    assert check_bind("0.0.0.0", token="", insecure=False) is not None


@pytest.mark.parametrize(
    "token", ["", " ", "x", "a" * (MIN_API_TOKEN_LENGTH - 1), " " * 20,
              "good-token-with a-space", "tab\there-0123456789", "trailing-newline-0123\n",
              "non-ascii-token-\u00e9\u00e9\u00e9", "nbsp-inside\u00a0token-0123"],
)
def test_a_weak_or_blank_token_is_refused_at_start_up_without_echoing_it(token: str) -> None:
    with pytest.raises(ValueError, match="EMBTUNE_API_TOKEN must be at least 16 characters of"):
        Settings(api_token=token)
    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--port", "1"], env={"EMBTUNE_API_TOKEN": token}
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid settings: EMBTUNE_API_TOKEN")
    if token.strip():
        assert token.strip() not in result.output


def test_a_long_token_without_whitespace_is_accepted() -> None:
    settings = Settings(api_token="a" * MIN_API_TOKEN_LENGTH)
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "a" * MIN_API_TOKEN_LENGTH


def test_the_start_up_line_masks_the_database_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    result = CliRunner().invoke(
        cli, ["serve", "--processes", "2"],
        env={"EMBTUNE_DATA_DIR": str(tmp_path), "EMBTUNE_BROKER_URL": "redis://127.0.0.1:1/0",
             "EMBTUNE_DATABASE_URL": "postgresql+psycopg://embtune:hunter2-pw@db.local/e"},
    )
    assert result.exit_code == 0, result.output
    assert "hunter2-pw" not in result.output
    assert "postgresql+psycopg://embtune:***@db.local/e" in result.output


def test_serve_on_all_interfaces_without_a_token_exits_2_with_one_line() -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--port", "1"], env={"EMBTUNE_API_TOKEN": None}
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to serve on 0.0.0.0")
    assert "--insecure" in lines[0]


@pytest.mark.parametrize(
    "args,env",
    [(["--insecure"], {"EMBTUNE_API_TOKEN": None}), ([], {"EMBTUNE_API_TOKEN": TOKEN})],
)
def test_serve_proceeds_with_a_token_or_insecure(
    args: list[str], env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    served: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(kwargs))
    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--port", "8123", *args],
        env={**env, "EMBTUNE_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("0.0.0.0", 8123)
    assert ("no API token" in result.output) == ("--insecure" in args)


def test_several_api_processes_need_a_shared_broker_and_no_in_process_worker() -> None:
    embedded = check_processes(2, "embedded", None)
    assert embedded is not None and "EMBTUNE_BROKER_URL" in embedded
    assert "embtune worker" in (check_processes(2, "redis", True) or "")
    assert check_processes(2, "redis", None) is None
    assert check_processes(1, "embedded", True) is None
    result = CliRunner().invoke(cli, ["serve", "--processes", "2"],
                                env={"EMBTUNE_BROKER_URL": None})
    assert result.exit_code == 2 and "--processes needs a shared broker" in result.output


def test_several_processes_serve_the_app_factory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    served: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    result = CliRunner().invoke(
        cli, ["serve", "--processes", "3"],
        env={"EMBTUNE_DATA_DIR": str(tmp_path), "EMBTUNE_BROKER_URL": "redis://127.0.0.1:1/0"},
    )
    assert result.exit_code == 0, result.output
    assert served["app"] == "embtune.api.app:create_app"
    assert (served["factory"], served["workers"]) == (True, 3)
