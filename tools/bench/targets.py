"""The systems under test, each started on 127.0.0.1 in front of the benchmark's simulator.

Each target starts its processes, lists the process ids that are its own (for CPU and
memory), and describes the requests it takes: URL, headers and model name.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tools.stack import HOST, Ports, Stack

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / ".bench"
"""Directory the harness installs the peers into (gitignored)."""

LITELLM_VERSION = "1.106.12"
"""litellm[proxy] release under test. Newer releases need wheels (litellm-proxy) that
the package index used here does not carry; 1.82.7 and 1.82.8 must never be used."""
PORTKEY_VERSION = "1.15.2"
"""@portkey-ai/gateway release under test."""

MODEL = "gpt-4o-mini"
SIMULATOR_KEY = "sim-local-key"
READY_TIMEOUT_S = 120.0


class TargetError(RuntimeError):
    """A target could not be installed or started. The message gives the reason."""


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    return Ports.free().envoy


def wait_http(url: str, headers: Mapping[str, str], process: subprocess.Popen[bytes] | None, log: Path) -> None:
    """Poll ``url`` until it returns a status below 500; raise TargetError on exit or timeout."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TargetError(f"exited with code {process.returncode}; log tail:\n{_tail(log)}")
        request = urllib.request.Request(url, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TargetError(f"{url} did not respond within {READY_TIMEOUT_S:g} s; log tail:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _spawn(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as log_file:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Target:
    """One system under test."""

    name = ""
    """Short id used in the JSON and table."""
    label = ""
    """Human-readable name for the table."""

    url = ""
    """Chat completions URL."""
    headers: dict[str, str] = {}
    """Headers every request carries (authentication, routing)."""

    def start(self) -> None:
        """Start the target's processes and wait until they serve."""

    def stop(self) -> None:
        """Stop everything the target started."""

    def pids(self) -> list[int]:
        """Return the root process ids of the target (their descendants count too)."""
        return []

    def version(self) -> str:
        """Return the version string for the report."""
        return ""


class Simulator(Target):
    """The provider simulator itself, called directly: the baseline every overhead subtracts."""

    name = "simulator"
    label = "simulator (direct)"

    def __init__(self, run_dir: Path, answer_bytes: int) -> None:
        self.port = free_port()
        self.run_dir = run_dir
        self.answer_bytes = answer_bytes
        self.process: subprocess.Popen[bytes] | None = None
        self.root_url = f"http://{HOST}:{self.port}"
        self.url = f"{self.root_url}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {SIMULATOR_KEY}"}

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'libs' / 'gen'}"}
        argv = [
            sys.executable,
            "-m",
            "tools.simulator",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--answer-bytes",
            str(self.answer_bytes),
            # The log of received requests is only for tests; keep it small.
            "--log-size",
            "10",
        ]
        log = self.run_dir / "simulator.log"
        self.process = _spawn(argv, env, log)
        wait_http(f"{self.root_url}/v1/models", self.headers, self.process, log)

    def stop(self) -> None:
        _stop(self.process)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process else []

    def version(self) -> str:
        return f"tools.simulator, --answer-bytes {self.answer_bytes}, no added latency"


CATALOG = """\
# Written by tools.bench: one model, one deployment, the benchmark's simulator.
models:
  - name: {model}
    owned_by: openai
    attributes:
      tier: standard
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075}}
    timeout_s: 30
    stream_idle_timeout_s: 30
    deployments:
      - name: primary
        provider: openai
        upstream_model: {model}
        base_url: {simulator}/v1
        api_key_env: SIMULATOR_API_KEY
        priority: 0
"""


class Gateway(Target):
    """This gateway: Envoy, the four services, Cerbos and PostgreSQL, via tools.stack."""

    name = "gateway"
    label = "this gateway"

    def __init__(
        self,
        run_dir: Path,
        simulator: Simulator,
        environ: Mapping[str, str] | None = None,
        data_dir_name: str = "gateway",
    ) -> None:
        """Prepare a stack with its own ports and data directory ``run_dir/data_dir_name``.

        ``environ`` is the environment of every process of the stack (default: this process's).
        Two stacks of one run need different ``data_dir_name`` values, because each runs its own
        PostgreSQL in that directory.
        """
        self.run_dir = run_dir
        data_dir = run_dir / data_dir_name
        data_dir.mkdir(parents=True, exist_ok=True)
        catalog = data_dir / "catalog.yaml"
        catalog.write_text(CATALOG.format(model=MODEL, simulator=simulator.root_url))
        env = dict(os.environ if environ is None else environ)
        env.update({"ROUTER_CATALOG": str(catalog), "SIMULATOR_API_KEY": SIMULATOR_KEY})
        self.stack = Stack(
            ports=Ports.free(),
            data_dir=data_dir,
            simulator_url=simulator.root_url,
            environ=env,
        )
        self.url = f"{self.stack.base_url}/chat/completions"
        self._version = ""

    def start(self) -> None:
        self._version = self._read_version()
        self.stack.start()
        self.headers = {"Authorization": f"Bearer {self.stack.api_key}"}

    def stop(self) -> None:
        self.stack.stop()

    def pids(self) -> list[int]:
        pids = [child.pid for child in self.stack.children if child.pid is not None]
        postgres = self.stack.postgres
        if postgres is not None and postgres.process is not None:
            pids.append(postgres.process.pid)
        return pids

    def version(self) -> str:
        # Read once: commits that land while the benchmark runs do not change what runs.
        if not self._version:
            self._version = self._read_version()
        return self._version

    def _read_version(self) -> str:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return f"commit {commit}{' with uncommitted changes' if dirty else ''}"


def install_litellm() -> Path:
    """Install litellm[proxy] into .bench/litellm (a venv of its own) and return its CLI."""
    venv = BENCH_DIR / "litellm"
    cli = venv / "bin" / "litellm"
    marker = venv / f"installed-{LITELLM_VERSION}"
    if not marker.exists():
        if not (venv / "bin" / "pip").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
        marker.touch()
    return cli


class LiteLLM(Target):
    """LiteLLM proxy, config only (no database), one worker, the simulator as an OpenAI provider."""

    name = "litellm"
    label = "LiteLLM proxy"

    def __init__(self, run_dir: Path, simulator: Simulator) -> None:
        self.run_dir = run_dir
        self.simulator = simulator
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.master_key = "sk-bench-" + secrets.token_hex(12)
        self.url = f"http://{HOST}:{self.port}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {self.master_key}"}

    def start(self) -> None:
        cli = install_litellm()
        config = self.run_dir / "litellm.yaml"
        config.write_text(
            json.dumps(
                {
                    "model_list": [
                        {
                            "model_name": MODEL,
                            "litellm_params": {
                                "model": f"openai/{MODEL}",
                                "api_base": f"{self.simulator.root_url}/v1",
                                "api_key": SIMULATOR_KEY,
                            },
                        }
                    ],
                    "litellm_settings": {"telemetry": False},
                    "general_settings": {"master_key": self.master_key},
                },
                indent=2,
            )
        )
        env = {
            **os.environ,
            "LITELLM_LOG": "ERROR",
            # Model prices ship inside the package; do not fetch the remote copy.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "DISABLE_SCHEMA_UPDATE": "True",
        }
        argv = [str(cli), "--config", str(config), "--host", HOST, "--port", str(self.port), "--num_workers", "1"]
        log = self.run_dir / "litellm.log"
        self.process = _spawn(argv, env, log, cwd=self.run_dir)
        wait_http(f"http://{HOST}:{self.port}/health/liveliness", {}, self.process, log)

    def stop(self) -> None:
        _stop(self.process)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process else []

    def version(self) -> str:
        return f"litellm[proxy] {LITELLM_VERSION}, one worker, no database"


# Node's http.Server.listen() binds every interface when no host is given, and the Portkey
# server gives none. This preload binds such listeners to 127.0.0.1 instead.
_LOOPBACK_PRELOAD = """\
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args[1] === undefined || typeof args[1] === "function")) {
    if (args[1] === undefined) args.splice(1, 1);
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
"""


def install_portkey() -> Path:
    """Install @portkey-ai/gateway into .bench/portkey and return its server script."""
    prefix = BENCH_DIR / "portkey"
    script = prefix / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    package = prefix / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    installed = json.loads(package.read_text()).get("version") if package.exists() else None
    if installed != PORTKEY_VERSION:
        prefix.mkdir(parents=True, exist_ok=True)
        if not (prefix / "package.json").exists():
            (prefix / "package.json").write_text('{"name": "aigw-bench-peers", "private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"@portkey-ai/gateway@{PORTKEY_VERSION}"],
            cwd=prefix,
            check=True,
        )
    return script


class Portkey(Target):
    """Portkey's open-source gateway on Node, routing to the simulator as a custom OpenAI host."""

    name = "portkey"
    label = "Portkey gateway"

    def __init__(self, run_dir: Path, simulator: Simulator) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://{HOST}:{self.port}/v1/chat/completions"
        self.headers = {
            "Authorization": f"Bearer {SIMULATOR_KEY}",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"{simulator.root_url}/v1",
        }

    def start(self) -> None:
        script = install_portkey()
        preload = self.run_dir / "loopback.cjs"
        preload.write_text(_LOOPBACK_PRELOAD)
        env = {**os.environ, "NODE_ENV": "production"}
        argv = ["node", "--require", str(preload), str(script), f"--port={self.port}", "--headless"]
        log = self.run_dir / "portkey.log"
        self.process = _spawn(argv, env, log)
        wait_http(f"http://{HOST}:{self.port}/", {}, self.process, log)

    def stop(self) -> None:
        _stop(self.process)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process else []

    def version(self) -> str:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
        return f"@portkey-ai/gateway {PORTKEY_VERSION} on Node {node}"


TargetFactory = Callable[[Path, Simulator], Target]
