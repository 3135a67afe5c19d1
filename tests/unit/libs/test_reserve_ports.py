"""Ports held while a service starts, so that its own outgoing connections do not take them."""

from __future__ import annotations

import socket

from libs.grpcserver import _reserve_ports


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_listen_and_metrics_ports_are_held() -> None:
    listen_port, metrics_port = _free_port(), _free_port()

    reserved = _reserve_ports("router", f"127.0.0.1:{listen_port}", metrics_port)
    try:
        bound_ports = sorted(sock.getsockname()[1] for sock in reserved)
    finally:
        for sock in reserved:
            sock.close()

    assert bound_ports == sorted([listen_port, metrics_port])


def test_port_zero_and_bad_address_skipped() -> None:
    assert _reserve_ports("router", "127.0.0.1:0", None) == []
    assert _reserve_ports("router", "no-port-here", None) == []


def test_port_in_use_is_left_alone() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])

        assert _reserve_ports("router", f"127.0.0.1:{port}", None) == []
