"""The command line's authentication and registration: ``answer --auth``/``--register``,
``call --user/--password/--proxy``, ``register`` — processes talking over loopback UDP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from invsess.cli import auth_users, main

CLI = [sys.executable, "-m", "invsess.cli"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``invsess answer`` in the background; ``stop()`` returns what it wrote to stderr."""

    def __init__(self, *args: str) -> None:
        self.port = free_udp_port()
        self.process = subprocess.Popen(
            [*CLI, "answer", "--listen", f"udp:127.0.0.1:{self.port}", "--t1", "0.02", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_serving(self.port)

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(2)
        _, err = self.process.communicate(timeout=30)
        return err


def wait_serving(port: int, timeout: float = 20.0) -> None:
    """Until an OPTIONS to 127.0.0.1:port is answered (the process has started and listens)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        me = sock.getsockname()[1]
        sock.settimeout(0.2)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            sock.sendto(
                (
                    f"OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKw{n}\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:w@127.0.0.1>;tag=w\r\nTo: <sip:x@127.0.0.1>\r\n"
                    f"Call-ID: wait-{me}-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                ("127.0.0.1", port),
            )
            try:
                if sock.recv(65535).startswith(b"SIP/2.0 200"):
                    return
            except TimeoutError:
                continue
    raise AssertionError(f"nothing answers on 127.0.0.1:{port}")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=90, check=False)


def test_answer_says_first_when_it_answers_anyone() -> None:
    server = Server("--duration", "2")
    err = server.stop()
    assert err.splitlines()[0].startswith("warning: no --auth: answering every call from anyone"), err


def test_register_call_and_wrong_password_against_answer_auth() -> None:
    server = Server("--auth", "alice:s3cret", "--auth", "bob:other", "--duration", "30")
    try:
        ok = run(
            "register",
            "--registrar",
            server.uri,
            "--user",
            "alice",
            "--password",
            "s3cret",
            "--expires",
            "90",
            "--unregister",
            "--t1",
            "0.02",
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "registered: <sip:alice@127.0.0.1:" in ok.stdout and "expires 90" in ok.stdout
        assert "unregistered: 200" in ok.stdout
        refused = run(
            "register", "--registrar", server.uri, "--user", "alice", "--password", "nope", "--t1", "0.02"
        )
        assert refused.returncode == 1 and "refused: 401 Unauthorized" in refused.stdout
        placed = run(
            "call",
            f"sip:bob@127.0.0.1:{server.port}",
            "--user",
            "bob",
            "--password",
            "other",
            "--hold",
            "0.2",
            "--t1",
            "0.02",
        )
        assert placed.returncode == 0 and "1 succeeded" in placed.stdout, placed.stdout + placed.stderr
        anonymous = run("call", f"sip:bob@127.0.0.1:{server.port}", "--hold", "0.2", "--t1", "0.02")
        assert anonymous.returncode == 1 and "(401 x1)" in anonymous.stdout
    finally:
        err = server.stop()
    lines = err.splitlines()
    assert lines[0] == "digest authentication required: realm 'invsess', 2 user(s)"
    assert "calls ended: 1" in err and "0 leaked blocks" in err
    assert "'failures_by_source': {'127.0.0.1': 1}" in err  # the wrong password, counted


def test_answer_registers_its_contact_and_answers_calls_routed_to_it() -> None:
    registrar = Server("--auth", "carol:pw", "--auth", "dave:pw2", "--duration", "30")
    port = free_udp_port()
    carol = subprocess.Popen(
        [*CLI, "answer", "--listen", f"udp:127.0.0.1:{port}", "--t1", "0.02", "--register", registrar.uri,
         "--user", "carol", "--password", "pw", "--expires", "60", "--calls", "1", "--duration", "25"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_serving(port)
        # The registrar answers REGISTER for carol; now a call reaches carol's contact.
        placed = run("call", f"sip:carol@127.0.0.1:{port}", "--hold", "0.2", "--t1", "0.02")
        assert placed.returncode == 0, placed.stdout + placed.stderr
        _, carol_err = carol.communicate(timeout=40)
    finally:
        if carol.poll() is None:
            carol.kill()
        err = registrar.stop()
    assert f"registered at {registrar.uri} as carol: expires 60" in carol_err, carol_err
    assert "calls ended: 1" in carol_err and "0 leaked blocks" in carol_err
    # carol's binding came and went: two REGISTERs accepted (the binding and Expires: 0).
    assert "'accepted': 2" in err, err


def test_answer_register_refused_exits_non_zero() -> None:
    registrar = Server("--auth", "carol:pw", "--duration", "20")
    try:
        done = subprocess.run(
            [*CLI, "answer", "--listen", "udp:127.0.0.1:0", "--t1", "0.02", "--register", registrar.uri,
             "--user", "carol", "--password", "wrong"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        registrar.stop()
    assert done.returncode == 2 and "registration refused: 401" in done.stderr, done.stderr


def test_auth_users_and_usage_errors(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("# who may call\nalice:one\n\nbob:two:with:colons\n")
    assert auth_users(("carol:three",), str(users)) == {
        "carol": "three",
        "alice": "one",
        "bob": "two:with:colons",
    }
    runner = CliRunner()
    for args in (
        ["answer", "--auth", "nopassword"],
        ["answer", "--auth", ":x"],
        ["answer", "--auth", "a:b", "--algorithms", "SHA-1"],
        ["answer", "--register", "sip:127.0.0.1:5060"],  # needs --user
        ["answer", "--register", "sip:registrar.example:5060", "--user", "u"],  # a name: nothing resolves it
        ["answer", "--password", "x"],  # without --user
        ["call", "sip:x@127.0.0.1:9", "--proxy", "tel:+1"],
        ["register", "--registrar", "http://x", "--user", "u"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)


@pytest.mark.parametrize("proxy", ["sip:127.0.0.1:5", "sip:127.0.0.1:5;lr"])
def test_proxy_route_is_loose(proxy: str) -> None:
    from invsess.cli import proxy_route

    assert proxy_route(proxy) == ["sip:127.0.0.1:5;lr"]
    assert proxy_route(None) == []
