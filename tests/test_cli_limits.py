"""The limit options of ``invsess answer`` on a real subprocess: Server header, call limit, and
what a bad option value gets."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from invsess.cli import main
from invsess.sip import parse_message


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def answer(*extra: str) -> tuple[subprocess.Popen[str], int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "invsess.cli", "answer", "--listen", f"udp:127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("warning: no --auth")  # answer's first line
    assert proc.stderr.readline().startswith("listening on")
    return proc, port


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def request(method: str, n: int, sock: socket.socket, port: int) -> bytes:
    host, sport = sock.getsockname()
    body = (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    body = body if method == "INVITE" else ""
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:bob@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{sport};branch=z9hG4bKc{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:a@{host}>;tag=t{n}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: cli{n}@x\r\n"
        f"CSeq: 1 {method}\r\nContact: <sip:a@{host}:{sport}>\r\n{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def final(sock: socket.socket) -> object:
    while True:
        msg = parse_message(sock.recv(65535))
        if msg.status_code >= 200:  # type: ignore[union-attr]
            return msg


def test_server_header_only_when_asked(udp: socket.socket) -> None:
    for extra, server in (((), None), (("--user-agent", "acme-uas/2"), "acme-uas/2")):
        proc, port = answer(*extra)
        try:
            udp.sendto(request("OPTIONS", 1, udp, port), ("127.0.0.1", port))
            response = final(udp)
            assert response.headers.get("Server") == server  # type: ignore[attr-defined]
        finally:
            stop(proc)


def test_max_calls_answers_503_with_retry_after(udp: socket.socket) -> None:
    proc, port = answer("--max-calls", "1", "--ring", "600")  # ringing for ten minutes: a live call
    try:
        udp.sendto(request("INVITE", 1, udp, port), ("127.0.0.1", port))
        first = parse_message(udp.recv(65535))
        assert first.status_code in (100, 180)  # type: ignore[union-attr]
        udp.sendto(request("INVITE", 2, udp, port), ("127.0.0.1", port))
        while True:
            msg = parse_message(udp.recv(65535))
            if msg.call_id == "cli2@x":
                break
        assert msg.status_code == 503  # type: ignore[union-attr]
        assert msg.retry_after is not None
    finally:
        err = stop(proc)
    assert "refused by limits: {'calls': 1}" in err
    assert "1 calls still up at shutdown" in err


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rate-limit", "banana"),
        ("--rate-limit", "10/0"),
        ("--max-calls", "-1"),
        ("--tcp-read-timeout", "0"),
        ("--memory", "0"),
    ],
)
def test_bad_limit_values_are_usage_errors(option: str, value: str) -> None:
    result = CliRunner().invoke(main, ["answer", "--duration", "0.1", option, value])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output
