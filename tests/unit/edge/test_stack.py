"""The launcher's configuration, child handling and key bookkeeping (no sockets)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tools import stack as stack_module
from tools.stack import Child, Ports, Stack, StackError, postgres_data_dir


def _stack(tmp_path: Path, **overrides: Any) -> Stack:
    stack = Stack(data_dir=tmp_path / "data", environ={"PATH": "/usr/bin"}, **overrides)
    stack.database_urls = {
        name: f"postgresql://postgres@127.0.0.1:1/{name}"
        for name in ("security", "cache", "metering")
    }
    return stack


def test_ports_defaults() -> None:
    ports = Ports()

    assert (ports.envoy, ports.envoy_admin) == (8080, 9901)
    assert (ports.router, ports.security, ports.cache, ports.metering) == (
        50051,
        50052,
        50053,
        50054,
    )
    assert (ports.router_metrics, ports.security_metrics) == (9101, 9102)
    assert (ports.cache_metrics, ports.metering_metrics) == (9103, 9104)
    assert (ports.cerbos_http, ports.cerbos_grpc, ports.simulator) == (3592, 3593, 8090)


def test_ports_from_env_overrides() -> None:
    ports = Ports.from_env({"AIGW_ENVOY_PORT": "18080", "AIGW_ROUTER_METRICS_PORT": "19101"})

    assert ports.envoy == 18080
    assert ports.router_metrics == 19101
    assert ports.router == 50051


@pytest.mark.parametrize("value", ["http", "0", "70000", "-1"])
def test_ports_from_env_rejects_invalid(value: str) -> None:
    with pytest.raises(StackError, match=f"AIGW_CACHE_PORT={value!r} is not a TCP port"):
        Ports.from_env({"AIGW_CACHE_PORT": value})


def test_ports_from_env_rejects_duplicates() -> None:
    with pytest.raises(StackError, match="AIGW_SIMULATOR_PORT and AIGW_ENVOY_PORT are both 8080"):
        Ports.from_env({"AIGW_SIMULATOR_PORT": "8080"})


def test_every_port_has_a_variable() -> None:
    names = [Ports.variable(field.name) for field in dataclasses.fields(Ports)]

    assert "AIGW_ENVOY_ADMIN_PORT" in names
    assert "AIGW_POSTGRES_PORT" in names
    assert len(set(names)) == len(names)


def test_postgres_dir_inside_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_module.os, "geteuid", lambda: 1000)

    assert postgres_data_dir(tmp_path / "data") == (tmp_path / "data" / "pg").resolve()


def test_postgres_dir_moves_when_parent_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack_module.os, "geteuid", lambda: 0)
    closed = tmp_path / "home"
    (closed / "project").mkdir(parents=True)
    closed.chmod(0o700)

    chosen = postgres_data_dir(closed / "project")

    assert chosen.parent.parent == Path("/var/tmp")
    assert chosen.name == "pg"
    assert chosen.parent.name.startswith("aigw-")
    assert postgres_data_dir(closed / "project") == chosen


def test_service_env_without_redis(tmp_path: Path) -> None:
    child = _stack(tmp_path, ports=Ports())._router()

    assert child.argv[1:] == ["-m", "services.router"]
    assert child.env["ROUTER_LISTEN"] == "127.0.0.1:50051"
    assert child.env["ROUTER_METRICS_PORT"] == "9101"
    assert child.env["ROUTER_SECURITY_ADDR"] == "127.0.0.1:50052"
    assert child.env["ROUTER_CACHE_ADDR"] == "127.0.0.1:50053"
    assert child.env["ROUTER_METERING_ADDR"] == "127.0.0.1:50054"
    assert child.env["ROUTER_CATALOG"].endswith("deploy/catalog/demo.yaml")
    assert child.env["SIMULATOR_URL"] == "http://127.0.0.1:8090"
    assert child.env["ROUTER_DRAIN_S"] == "0"
    assert "ROUTER_REDIS_URL" not in child.env
    assert child.log_path == tmp_path / "data" / "logs" / "router.log"


def test_service_env_with_redis(tmp_path: Path) -> None:
    stack = _stack(tmp_path, redis_url="redis://127.0.0.1:6379/3")

    assert stack._cache().env["CACHE_REDIS_URL"] == "redis://127.0.0.1:6379/3"
    assert stack._metering().env["METERING_REDIS_URL"] == "redis://127.0.0.1:6379/3"
    assert stack._router().env["ROUTER_REDIS_URL"] == "redis://127.0.0.1:6379/3"
    assert "SECURITY_REDIS_URL" not in stack._security().env


def test_service_env_databases(tmp_path: Path) -> None:
    stack = _stack(tmp_path)

    security = stack._security().env

    assert security["SECURITY_DATABASE_URL"].endswith("/security")
    assert security["SECURITY_CERBOS_ADDR"] == "127.0.0.1:3593"
    assert stack._cache().env["CACHE_DATABASE_URL"].endswith("/cache")
    assert stack._metering().env["METERING_DATABASE_URL"].endswith("/metering")


@pytest.mark.parametrize("value", ["false", "0", "off"])
def test_cache_without_database_when_semantic_off(tmp_path: Path, value: str) -> None:
    stack = _stack(tmp_path)
    stack.environ["ROUTER_SEMANTIC_CACHE"] = value

    assert "CACHE_DATABASE_URL" not in stack._cache().env


def test_cache_database_kept_for_invalid_semantic_setting(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    stack.environ["ROUTER_SEMANTIC_CACHE"] = "sometimes"

    assert stack._cache().env["CACHE_DATABASE_URL"].endswith("/cache")


def test_caller_drain_setting_wins(tmp_path: Path) -> None:
    stack = Stack(data_dir=tmp_path, environ={"ROUTER_DRAIN_S": "3"})
    stack.database_urls = {"security": "", "cache": "", "metering": ""}

    assert stack._router().env["ROUTER_DRAIN_S"] == "3"


def test_caller_catalog_wins(tmp_path: Path) -> None:
    stack = Stack(data_dir=tmp_path, environ={"ROUTER_CATALOG": "/etc/aigw/catalog.yaml"})
    stack.database_urls = {"security": "", "cache": "", "metering": ""}

    assert stack._router().env["ROUTER_CATALOG"] == "/etc/aigw/catalog.yaml"


def test_child_exit_reports_log_tail(tmp_path: Path) -> None:
    script = "import sys; print('config error: ROUTER_CATALOG is missing'); sys.exit(3)"
    child = Child(
        "router", [sys.executable, "-c", script], {}, tmp_path / "router.log", lambda: False
    )
    child.start()

    with pytest.raises(StackError) as failure:
        child.wait_ready()

    assert "router exited with code 3 before it was ready" in str(failure.value)
    assert "ROUTER_CATALOG is missing" in str(failure.value)


def test_child_ready_timeout_names_child(tmp_path: Path) -> None:
    child = Child(
        "cache",
        [sys.executable, "-c", "import time; time.sleep(30)"],
        {},
        tmp_path / "cache.log",
        lambda: False,
        ready_timeout_s=0.3,
    )
    child.start()
    pid = child.pid

    try:
        with pytest.raises(StackError, match=rf"cache \(pid {pid}\) was not ready within 0.3 s"):
            child.wait_ready()
    finally:
        child.stop()


def test_child_stop_sends_sigterm(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('got SIGTERM', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('up', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = Child("probe", [sys.executable, "-c", script], {}, tmp_path / "probe.log", lambda: True)
    child.start()
    process = child.process
    assert process is not None
    deadline = time.monotonic() + 10
    while "up" not in child.tail() and time.monotonic() < deadline:
        time.sleep(0.05)

    child.stop(timeout_s=10)

    assert process.returncode == 0
    assert "got SIGTERM" in child.tail()
    assert child.pid is None


def test_child_tail_shows_only_this_run(tmp_path: Path) -> None:
    log_path = tmp_path / "probe.log"
    log_path.write_text("line of an earlier run\n")
    child = Child("probe", [sys.executable, "-c", "print('this run', flush=True)"], {}, log_path, lambda: True)

    child.start()
    assert child.process is not None
    child.process.wait(timeout=10)

    assert child.tail() == "this run"
    assert "earlier run" in log_path.read_text()


def test_demo_key_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _stack(tmp_path)
    stack.data_dir.mkdir(parents=True)
    (stack.data_dir / "demo-key").write_text("sk-aigw-remembered\n")
    monkeypatch.setattr(Stack, "_key_status", lambda self, key: 200)
    monkeypatch.setattr(Stack, "create_key", lambda self, **kwargs: pytest.fail("created a key"))

    assert stack._demo_key() == "sk-aigw-remembered"


def test_rejected_demo_key_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _stack(tmp_path)
    stack.data_dir.mkdir(parents=True)
    key_file = stack.data_dir / "demo-key"
    key_file.write_text("sk-aigw-stale\n")
    monkeypatch.setattr(Stack, "_key_status", lambda self, key: 401)
    monkeypatch.setattr(Stack, "create_key", lambda self, **kwargs: "sk-aigw-fresh")

    assert stack._demo_key() == "sk-aigw-fresh"
    assert key_file.read_text() == "sk-aigw-fresh\n"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_create_key_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout="sk-aigw-new123\n", stderr="")

    monkeypatch.setattr(stack_module.subprocess, "run", fake_run)

    key = _stack(tmp_path).create_key(
        roles=["user", "premium"], models=["gpt-4o-mini"], budget_usd=2.5, tenant="acme"
    )

    argv = calls[0]
    assert key == "sk-aigw-new123"
    assert argv[1:3] == ["-m", "services.security.keys_cli"]
    assert argv[argv.index("--database-url") + 1].endswith("/security")
    assert argv[argv.index("--tenant") + 1] == "acme"
    assert argv[argv.index("--roles") + 1] == "user,premium"
    assert argv[argv.index("--models") + 1] == "gpt-4o-mini"
    assert argv[argv.index("--budget-usd") + 1] == "2.5"


def test_create_key_failure_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 2, stdout="", stderr="unknown role 'root'")

    monkeypatch.setattr(stack_module.subprocess, "run", fake_run)

    with pytest.raises(StackError, match="exit code 2.*unknown role 'root'"):
        _stack(tmp_path).create_key(roles=["root"])


def test_run_prints_two_export_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped: list[bool] = []

    def fake_start(self: Stack) -> None:
        self.api_key = "sk-aigw-demo"

    def interrupt(self: Stack) -> list[Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(Stack, "start", fake_start)
    monkeypatch.setattr(Stack, "exited", interrupt)
    monkeypatch.setattr(Stack, "stop", lambda self: stopped.append(True))
    monkeypatch.setattr(stack_module.signal, "signal", lambda *args: None)

    code = stack_module.run({"AIGW_DATA_DIR": str(tmp_path), "AIGW_ENVOY_PORT": "18080"})

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "export OPENAI_BASE_URL=http://127.0.0.1:18080/v1",
        "export OPENAI_API_KEY=sk-aigw-demo",
    ]
    assert stopped == [True]


def test_run_rejects_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    code = stack_module.run({"AIGW_ENVOY_PORT": "eighty"})

    assert code == 2
    assert "AIGW_ENVOY_PORT='eighty' is not a TCP port" in capsys.readouterr().err


def test_security_reads_the_router_catalog(tmp_path: Path) -> None:
    stack = Stack(data_dir=tmp_path, environ={"ROUTER_CATALOG": "/etc/aigw/catalog.yaml"})
    stack.database_urls = {"security": "", "cache": "", "metering": ""}
    disabled = Stack(data_dir=tmp_path, environ={"SECURITY_CATALOG": ""})
    disabled.database_urls = stack.database_urls

    assert stack._security().env["SECURITY_CATALOG"] == "/etc/aigw/catalog.yaml"
    assert disabled._security().env["SECURITY_CATALOG"] == ""
