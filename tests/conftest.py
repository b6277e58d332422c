"""Shared test configuration: the CI profile, logging, the slow marker, the RFC 4475 corpus."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings

# In CI (``CI`` set, as .ci/run and most CI systems do) the property tests run the same examples
# every time, so that a build cannot fail on a case no earlier run met; exploring new cases is
# what local runs (and the opt-in stress runs) are for.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Tests read the library's logs through structlog.testing.capture_logs where they matter;
# everything below WARNING would only be noise in failure reports.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

ROOT = Path(__file__).resolve().parent.parent
#: The RFC's own torture messages, copied into the repository (see its README for the origin).
RFC4475 = Path(__file__).resolve().parent / "data" / "rfc4475"


def rfc4475_rows() -> list[dict[str, str]]:
    """The rows of expected.tsv (read at collection time)."""
    lines = [line for line in (RFC4475 / "expected.tsv").read_text().splitlines() if not line.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line.strip()]


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """Commands run in-process (click's CliRunner) tune the cycle collector as a serving
    process does (invsess.collector): undone after each test, so the suite runs on CPython's
    settings and nothing stays frozen."""
    thresholds = gc.get_threshold()
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
    gc.set_threshold(*thresholds)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--run-slow`` runs the soak and load tests (CI runs their short versions only)."""
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the slow tests unless --run-slow."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """The plugin's --sip-network switch reaches the World of the session tests too."""
    from . import sessions

    sessions.NETWORK = config.getoption("--sip-network")


@pytest.fixture(autouse=True)
def _close_loopback_networks() -> Iterator[None]:
    """Real sockets of a World on --sip-network=loopback are closed whatever the test did."""
    from . import sessions

    yield
    while sessions.OPEN:
        sessions.OPEN.pop().close()
