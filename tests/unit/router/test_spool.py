"""The settlement spool: settlements on disk until metering has them, recovered by the
next router, including after the process was killed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aigateway.metering.v1 import metering_service_pb2 as metering_pb

from services.router.clients import MeteringClient
from services.router.spool import SettlementSpool, SpoolInUseError
from tests.unit.router.test_clients import FakeMetering

ROOT = Path(__file__).resolve().parents[3]


def _settlement(n: int) -> metering_pb.SettleRequest:
    return metering_pb.SettleRequest(request_id=f"req-{n}", model="gpt-4o-mini", cost_usd=0.001 * n)


def _segments(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("settlements-*.log"))


def test_spool_keeps_undelivered_settlements_for_the_next_process(tmp_path: Path) -> None:
    spool = SettlementSpool(tmp_path)
    for n in range(3):
        spool.append(_settlement(n))
    spool.close()

    recovered = SettlementSpool(tmp_path).recover()

    assert [message for message, _ in recovered] == [_settlement(n) for n in range(3)]


def test_spool_deletes_closed_segments_once_delivered(tmp_path: Path) -> None:
    spool = SettlementSpool(tmp_path, segment_records=2)
    segments = [spool.append(_settlement(n)) for n in range(5)]
    assert segments == [1, 1, 2, 2, 3]

    spool.delivered(1)
    spool.delivered(1)
    spool.delivered(3)

    # Segment 1 is done, and 2 still has two pending. Segment 3 is open, so it stays until closed.
    assert _segments(tmp_path) == ["settlements-000000000002.log", "settlements-000000000003.log"]
    spool.close()
    assert _segments(tmp_path) == ["settlements-000000000002.log"]


def test_spool_recovery_skips_a_cut_last_record(tmp_path: Path) -> None:
    spool = SettlementSpool(tmp_path)
    spool.append(_settlement(1))
    spool.append(_settlement(2))
    spool.close()
    [segment] = tmp_path.glob("settlements-*.log")
    with segment.open("ab") as file:
        file.write(b"\x40\x00\x00\x00partial")

    recovered = SettlementSpool(tmp_path).recover()

    assert [message.request_id for message, _ in recovered] == ["req-1", "req-2"]


def test_spool_directory_has_one_owner(tmp_path: Path) -> None:
    first = SettlementSpool(tmp_path)

    with pytest.raises(SpoolInUseError, match="give each router replica its own ROUTER_SPOOL_DIR"):
        SettlementSpool(tmp_path)
    first.close()
    SettlementSpool(tmp_path).close()


def test_spool_over_its_size_keeps_settlements_in_memory(tmp_path: Path) -> None:
    spool = SettlementSpool(tmp_path, max_bytes=100)
    segments = [spool.append(_settlement(n)) for n in range(10)]

    assert segments[0] == 1
    assert segments[-1] is None
    spool.close()


async def test_restarted_client_sends_spooled_settlements(tmp_path: Path) -> None:
    down = FakeMetering()
    down.down = True
    first = MeteringClient("127.0.0.1:9", spool=SettlementSpool(tmp_path))
    first.stub = down  # type: ignore[assignment]
    for n in range(5):
        first.settle(_settlement(n))
    await first.close(flush_timeout_s=0.3)

    up = FakeMetering()
    second = MeteringClient("127.0.0.1:9", spool=SettlementSpool(tmp_path))
    second.stub = up  # type: ignore[assignment]
    assert second.recover() == 5
    await second.close(flush_timeout_s=2)

    assert sorted(request_id for batch in up.batches for request_id in batch) == [f"req-{n}" for n in range(5)]
    assert _segments(tmp_path) == []


async def test_delivered_settlements_leave_no_segment(tmp_path: Path) -> None:
    fake = FakeMetering()
    client = MeteringClient("127.0.0.1:9", spool=SettlementSpool(tmp_path))
    client.stub = fake  # type: ignore[assignment]
    for n in range(20):
        client.settle(_settlement(n))
    await client.close()

    assert sum(len(batch) for batch in fake.batches) == 20
    assert _segments(tmp_path) == []


def test_settlements_of_a_killed_router_are_recovered(tmp_path: Path) -> None:
    # A router process that settles while metering is unreachable, then is killed.
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from aigateway.metering.v1 import metering_service_pb2 as metering_pb
        from pathlib import Path
        from services.router.clients import MeteringClient
        from services.router.spool import SettlementSpool

        async def main():
            client = MeteringClient("127.0.0.1:9", timeout_s=0.2, spool=SettlementSpool(Path({str(tmp_path)!r})))
            for n in range(7):
                client.settle(metering_pb.SettleRequest(request_id=f"killed-{{n}}"))
            await asyncio.sleep(0.3)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'libs' / 'gen'}"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, timeout=60, check=False)
    assert result.returncode == -9

    async def restart() -> FakeMetering:
        up = FakeMetering()
        client = MeteringClient("127.0.0.1:9", spool=SettlementSpool(tmp_path))
        client.stub = up  # type: ignore[assignment]
        client.recover()
        await client.close(flush_timeout_s=2)
        return up

    up = asyncio.run(restart())

    assert sorted(request_id for batch in up.batches for request_id in batch) == [f"killed-{n}" for n in range(7)]
    assert _segments(tmp_path) == []
