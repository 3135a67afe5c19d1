"""Run Debian's ``wrk`` with a generated Lua script that POSTs chat completion bodies.

The script builds each body in Lua, so every request can carry a prompt of its own. It
stops a thread after a request count when one is given, counts the ``x-aigw-cache``
response header, and prints its results as one JSON line from ``done``. wrk itself waits
out its whole duration, so with a request count ``run_wrk`` ends it with SIGINT (on which
wrk reports at once) when every thread has reached the count.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

UNIQUE = "unique"
"""Every request a prompt of its own: no cache can answer it."""
FIXED = "fixed"
"""The same body every time: the exact cache answers it once it is stored."""
SPACED = "spaced"
"""One paraphrase, with the spaces between its words varied per request: the exact key
differs every time while the embedding (whitespace is not a token) stays the same."""

POLL_INTERVAL_S = 0.02
"""How often ``run_wrk`` checks whether every thread has reached its request limit."""

# Lua source; {placeholders} are filled in by str.format, so Lua braces are doubled.
_SCRIPT = r"""
local config = {config}
wrk.method = "POST"
wrk.path = config.path
for name, value in pairs(config.headers) do wrk.headers[name] = value end

local threads = {{}}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("worker", next_id)
  table.insert(threads, thread)
end

function init(args)
  limit = config.limit
  finished = false
  sent = 0
  received = 0
  cache_miss = 0
  cache_exact = 0
  cache_semantic = 0
  cache_other = 0
end

local function json_string(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

local function spaced(text, n)
  -- Digit i of n in base 3 picks one to three spaces for the gap after word i.
  local out = {{}}
  for word in string.gmatch(text, "%S+") do
    if #out > 0 then
      table.insert(out, string.rep(" ", n % 3 + 1))
      n = math.floor(n / 3)
    end
    table.insert(out, word)
  end
  return table.concat(out)
end

function request()
  sent = sent + 1
  local prompt
  if config.mode == "unique" then
    prompt = string.format(config.prompt, config.run, worker, sent)
  elseif config.mode == "spaced" then
    prompt = spaced(config.prompt, (worker - 1) * 100000 + sent)
  else
    prompt = config.prompt
  end
  local body = '{{"model":' .. json_string(config.model) .. ',"messages":[{{"role":"user","content":'
    .. json_string(prompt) .. '}}]}}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  received = received + 1
  local cache = headers["x-aigw-cache"]
  if cache == nil then
  elseif cache == "miss" then cache_miss = cache_miss + 1
  elseif cache == "exact" then cache_exact = cache_exact + 1
  elseif cache == "semantic" then cache_semantic = cache_semantic + 1
  else cache_other = cache_other + 1 end
  if limit > 0 and received >= limit and not finished then
    finished = true
    -- One line per thread that reached the limit, for run_wrk to count.
    local marker = io.open(config.done_path, "a")
    if marker then
      marker:write("done\n")
      marker:close()
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local counts = {{miss = 0, exact = 0, semantic = 0, other = 0}}
  for _, thread in ipairs(threads) do
    counts.miss = counts.miss + (thread:get("cache_miss") or 0)
    counts.exact = counts.exact + (thread:get("cache_exact") or 0)
    counts.semantic = counts.semantic + (thread:get("cache_semantic") or 0)
    counts.other = counts.other + (thread:get("cache_other") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {{"requests":%d,"duration_us":%d,"errors":{{"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d}},"latency_us":{{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}},'
    .. '"cache":{{"miss":%d,"exact":%d,"semantic":%d,"other":%d}}}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, counts.miss, counts.exact, counts.semantic, counts.other))
end
"""


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


def ensure_wrk() -> str:
    """Return the path of wrk, installing Debian's package first when it is missing.

    The harness installs its peers itself, so it installs its load generator too. That
    takes root and apt-get; without them the error names the package to install.
    """
    binary = shutil.which("wrk")
    if binary is not None:
        return binary
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise WrkError("wrk not found on PATH: install the Debian package as root (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "-qq", "wrk"]
    print("bench: installing wrk with apt-get", flush=True)
    # A machine whose package lists are stale or empty needs an update first.
    if subprocess.run(install, env=env, stdin=subprocess.DEVNULL, check=False).returncode != 0:
        subprocess.run([apt_get, "update", "-qq"], env=env, stdin=subprocess.DEVNULL, check=False)
        subprocess.run(install, env=env, stdin=subprocess.DEVNULL, check=False)
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkError("installing wrk with apt-get failed: install the Debian package by hand (apt-get install wrk)")
    return binary


@dataclass(frozen=True)
class Workload:
    """Requests of one wrk run."""

    url: str
    """Full URL of the chat completions endpoint."""
    headers: dict[str, str]
    """Request headers besides Content-Type."""
    model: str
    """Value of the body's ``model`` field."""
    mode: str
    """UNIQUE, FIXED or SPACED."""
    prompt: str
    """The prompt; for UNIQUE a Lua format string taking run id, worker and request number."""
    run_id: int = 0
    """Number that makes UNIQUE prompts differ from those of earlier runs."""


def _lua_value(value: object) -> str:
    """Return ``value`` (str, int, dict of those) as a Lua literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid in Lua 5.1 strings
    if isinstance(value, dict):
        items = ", ".join(f"[{json.dumps(str(k))}] = {_lua_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def render_script(workload: Workload, limit: int, done_path: str = "") -> str:
    """Return the Lua script for ``workload``.

    ``limit`` > 0 stops each thread after that many responses, and the thread then
    appends one line to the file ``done_path``.
    """
    path = "/" + workload.url.split("/", 3)[3]
    config = {
        "path": path,
        "headers": {"Content-Type": "application/json", **workload.headers},
        "model": workload.model,
        "mode": workload.mode,
        "prompt": workload.prompt,
        "run": workload.run_id,
        "limit": limit,
        "done_path": done_path,
    }
    return _SCRIPT.format(config=_lua_value(config))


def run_wrk(
    workload: Workload, *, connections: int, threads: int, duration_s: float, limit: int = 0
) -> dict[str, object]:
    """Run wrk once and return its result: requests, duration, errors, latency (µs), cache counts.

    ``duration_s`` is the length of the run. ``limit`` > 0 makes each thread stop sending
    after that many responses, and the run ends as soon as every thread has stopped, so
    ``duration_s`` is then only its upper bound.
    """
    binary = ensure_wrk()
    base = workload.url.split("/", 3)
    origin = f"{base[0]}//{base[2]}"
    with tempfile.TemporaryDirectory(prefix="aigw-wrk-") as folder:
        script = Path(folder) / "workload.lua"
        done = Path(folder) / "done"
        script.write_text(render_script(workload, limit, str(done)))
        process = subprocess.Popen(
            [
                binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, math.ceil(duration_s))}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                origin,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + duration_s + 60
        try:
            if limit > 0:
                _stop_when_done(process, done, threads, deadline)
            stdout, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise WrkError(
                f"wrk did not finish within {duration_s + 60:.0f} s: check that the target still responds"
            ) from None
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return dict(json.loads(line.removeprefix("BENCH_RESULT ")))
    raise WrkError(f"wrk exited with code {process.returncode} and no result: {stderr.strip()[-500:]}")


def _stop_when_done(process: subprocess.Popen[str], done: Path, threads: int, deadline: float) -> None:
    """Send wrk SIGINT once ``threads`` lines are in ``done``, before ``deadline``. wrk then reports at once."""
    while process.poll() is None and time.monotonic() < deadline:
        try:
            finished = done.read_text().count("\n")
        except FileNotFoundError:
            finished = 0
        if finished >= threads:
            process.send_signal(signal.SIGINT)
            return
        time.sleep(POLL_INTERVAL_S)
