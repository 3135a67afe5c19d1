"""The benchmark's wrk runner: a request limit ends a run early, and the results are read back."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools.bench import wrk
from tools.bench.wrk import FIXED, Workload, WrkError, ensure_wrk, render_script, run_wrk

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")

ANSWER = b'{"choices": []}'


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.send_header("x-aigw-cache", "miss")
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature fixed by http.server
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    finally:
        server.shutdown()
        server.server_close()


@needs_wrk
def test_limit_ends_run_early(url: str) -> None:
    workload = Workload(url, {}, "demo-model", FIXED, "Say hello.")
    started = time.monotonic()

    result = run_wrk(workload, connections=1, threads=1, duration_s=30, limit=50)

    assert time.monotonic() - started < 15
    assert result["requests"] >= 50
    assert result["cache"] == {"miss": result["requests"], "exact": 0, "semantic": 0, "other": 0}


@needs_wrk
def test_run_without_limit_lasts_its_duration(url: str) -> None:
    workload = Workload(url, {}, "demo-model", FIXED, "Say hello.")
    started = time.monotonic()

    result = run_wrk(workload, connections=2, threads=1, duration_s=1)

    assert time.monotonic() - started >= 1
    assert result["requests"] > 0


def test_script_names_marker_file() -> None:
    workload = Workload("http://127.0.0.1:1/v1/chat/completions", {}, "demo-model", FIXED, "Say hello.")

    script = render_script(workload, 10, "/tmp/aigw-wrk-test/done")

    assert '["limit"] = 10' in script
    assert '["done_path"] = "/tmp/aigw-wrk-test/done"' in script


def test_missing_wrk_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wrk.shutil, "which", lambda name: None)
    monkeypatch.setattr(wrk.os, "geteuid", lambda: 1000)
    with pytest.raises(WrkError, match=r"apt-get install wrk"):
        ensure_wrk()


def test_present_wrk_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wrk.shutil, "which", lambda name: f"/opt/bin/{name}")
    assert ensure_wrk() == "/opt/bin/wrk"
