"""The event loop a command runs on (invsess.aio.loop): uvloop when installed, asyncio's own on
request; the same calls work on both."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from invsess.aio import UserAgent
from invsess.aio.loop import loop_factory, run, running_loop_name
from invsess.errors import UsageError
from invsess.inv import InviteState
from invsess.sdp import parse_sdp

uvloop = pytest.importorskip("uvloop")
INVSESS = [sys.executable, "-m", "invsess.cli"]
SDP = parse_sdp(
    b"v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def test_auto_takes_uvloop_and_asyncio_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVSESS_LOOP", raising=False)
    assert loop_factory(None) == ("uvloop", uvloop.new_event_loop)
    assert loop_factory("auto")[0] == "uvloop"
    assert loop_factory("asyncio") == ("asyncio", None)
    assert loop_factory("uvloop")[0] == "uvloop"
    monkeypatch.setenv("INVSESS_LOOP", "asyncio")
    assert loop_factory(None) == ("asyncio", None)
    assert loop_factory("uvloop")[0] == "uvloop"  # the argument wins over the environment


def test_an_unknown_loop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="unknown event loop 'trio'"):
        loop_factory("trio")
    monkeypatch.setenv("INVSESS_LOOP", "tokio")
    with pytest.raises(UsageError, match="unknown event loop 'tokio'"):
        loop_factory(None)


def test_without_uvloop_auto_falls_back_and_uvloop_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    monkeypatch.delenv("INVSESS_LOOP", raising=False)
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(UsageError, match=r"uvloop is not installed \(pip install 'invsess\[fast\]'\)"):
        loop_factory("uvloop")

    async def never() -> None:  # pragma: no cover - not run: the loop cannot be made
        pass

    with pytest.raises(UsageError):
        run(never(), loop="uvloop")  # and the coroutine is closed, not left unawaited (-W error)


@pytest.mark.parametrize("name", ["asyncio", "uvloop"])
def test_a_call_over_loopback_on_each_loop(name: str) -> None:
    async def call() -> tuple[str, Any, Any]:
        bob = await UserAgent.create(["udp:127.0.0.1:0"], sdp=SDP, user="bob")
        alice = await UserAgent.create(["udp:127.0.0.1:0"], sdp=SDP, user="alice")
        host, port = bob.endpoint.listeners["udp"]
        placed = await alice.call(f"sip:bob@{host}:{port}")
        incoming = await bob.incoming(timeout=5)
        await incoming.answer(200)
        await placed.wait_for(InviteState.CONFIRMED, timeout=5)
        await placed.hangup()
        await incoming.wait_for(InviteState.DISCONNECTED, timeout=5)
        await placed.close()
        await incoming.close()
        return running_loop_name(), await alice.close(timeout=1), await bob.close(timeout=1)

    used, alice_report, bob_report = run(call(), loop=name)
    assert used == name
    assert not alice_report and not bob_report


@pytest.mark.parametrize("name", ["asyncio", "uvloop"])
def test_the_command_line_runs_on_each_loop(name: str) -> None:
    answer = subprocess.Popen(
        [*INVSESS, "answer", "--listen", "udp:127.0.0.1:0", "--t1", "0.05", "--calls", "2", "--loop", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert answer.stderr is not None
    lines: list[str] = []
    while not any(line.startswith("event loop:") for line in lines):
        line = answer.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    port = next(line for line in lines if line.startswith("listening on udp:")).rsplit(":", 1)[1].strip()
    assert f"event loop: {name}\n" in lines
    placed = subprocess.run(
        [*INVSESS, "call", f"sip:bob@127.0.0.1:{port}", "--t1", "0.05", "--calls", "2", "--rate", "20",
         "--hold", "0.1", "--loop", name],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert placed.returncode == 0, placed.stdout + placed.stderr
    _, err = answer.communicate(timeout=60)
    assert answer.returncode == 0, err
    assert "calls ended: 2 (cause 200 x2)" in err


def test_loop_from_the_environment_and_a_bad_name() -> None:
    done = subprocess.run(
        [*INVSESS, "answer", "--duration", "0.1"], capture_output=True, text=True, timeout=60, check=False,
        env={**__import__("os").environ, "INVSESS_LOOP": "asyncio"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "event loop: asyncio" in done.stderr
    bad = subprocess.run(
        [*INVSESS, "answer", "--loop", "tokio"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2
    assert "Invalid value for '--loop'" in bad.stderr


def test_asyncio_run_still_works_beside_it() -> None:
    """Nothing global is changed: asyncio.run keeps asyncio's loop."""
    run(asyncio.sleep(0), loop="uvloop")

    async def which() -> str:
        return running_loop_name()

    assert asyncio.run(which()) == "asyncio"
