"""The API token never reaches a log: a real `embtune serve` at `--log-level info` (access log
on) is signed in to through an old `/?token=` bookmark and through the form, called with a
bearer token and with the token in a query string; its whole output never holds the token."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.backends import Backend
from tests.support.live_server import unused_port
from tests.support.processes import ROOT

pytestmark = pytest.mark.backends("sqlite-embedded")


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"embtune serve exited:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"embtune serve not up:\n{log.read_text()}"
        time.sleep(0.1)


def test_serve_never_logs_the_api_token(backend: Backend, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = {**os.environ, **backend.env(tmp_path / "data", EMBTUNE_API_TOKEN=token),
           "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "embtune.cli", "serve", "--port", str(port),
             "--log-level", "info"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(url, process, log)
        with httpx.Client(base_url=url, timeout=10, follow_redirects=True) as browser:
            old = browser.get(f"/?token={token}")  # an old bookmark: back to the form
            assert old.status_code == 200 and str(old.url) == f"{url}/login"
            assert browser.get(f"/?api_token={token}&x=1").status_code == 200
            signed_in = browser.post("/login", data={"token": token})
            assert signed_in.status_code == 200 and str(signed_in.url) == f"{url}/"
            assert browser.get("/api/v1/embedding-models").status_code == 200
        with httpx.Client(base_url=url, timeout=10) as script:
            bearer = {"Authorization": f"Bearer {token}"}
            assert script.get("/api/v1/fine-tuning/task", headers=bearer).status_code == 200
            assert script.get(f"/api/v1/fine-tuning/task?token={token}").status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    output = log.read_text(errors="replace")
    assert '"GET /?token=[redacted] HTTP/1.1" 303' in output, output  # the access log is on
    assert '"POST /login HTTP/1.1" 303' in output
    assert "/api/v1/fine-tuning/task?token=[redacted]" in output
    assert token not in output
