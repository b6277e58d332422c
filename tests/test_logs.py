"""The library logs nothing until the application configures structlog, and then only at or above
the level it chose (a library must not print; per-message logging must cost nothing when off)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from invsess.logs import get_logger

A_CALL = textwrap.dedent(
    """
    from invsess.inv import IncomingCall
    from tests.sessions import B, World

    w = World()
    session = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    for _, kind, detail in w.run(0.1):
        if kind == "incoming":
            w.bob.answer(detail, 200, w.net.now)
    w.run(0.2)
    w.alice.hangup(session, w.net.now)
    w.settle()
    """
)


def test_a_whole_call_prints_nothing_when_the_application_configured_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", A_CALL], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("restore_structlog")
def test_lines_are_written_once_structlog_is_configured_and_only_at_its_level() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    log = get_logger("invsess.test").bind(call_id="c1")
    built: list[str] = []

    def context() -> dict[str, str]:
        built.append("context")
        return {"state": "CONFIRMED"}

    lazy = log.bind_lazy(context)
    with capture_logs() as lines:
        lazy.info("session state", new="CONFIRMED")
    assert lines == [{"event": "session state", "call_id": "c1", "state": "CONFIRMED", "new": "CONFIRMED",
                      "log_level": "info"}]  # fmt: skip
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    built.clear()
    assert not lazy.is_enabled_for(logging.INFO) and lazy.is_enabled_for(logging.ERROR)
    lazy.info("below the level")
    assert built == []  # the context of a line that is not written is never built
