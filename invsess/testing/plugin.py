"""The invsess pytest plugin, registered through the ``pytest11`` entry point.

* MALLOC_DEBUG is on for every test (``INVSESS_MALLOC_DEBUG=1``) unless ``--invsess-malloc-debug=off``.
* Fixtures: ``sim_network`` (seedable, virtual time) and ``endpoint_factory`` (endpoints on it).
* The leak gate: at teardown every endpoint made by ``endpoint_factory`` is closed; a live block
  or reference fails the test with the grouped leak report and the ladder of what happened.
  ``@pytest.mark.allow_leaks`` opts a test out (for tests that leak on purpose).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.testing.network import LinkProfile, SimNetwork


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--invsess-malloc-debug`` and ``--invsess-seed``."""
    group = parser.getgroup("invsess")
    group.addoption(
        "--invsess-malloc-debug",
        choices=("on", "off"),
        default="on",
        help="run tests with MALLOC_DEBUG poisoning (default: on)",
    )
    group.addoption("--invsess-seed", type=int, default=0, help="seed of the simulated network (default: 0)")


def pytest_configure(config: pytest.Config) -> None:
    """Switch MALLOC_DEBUG on and register the markers."""
    if config.getoption("--invsess-malloc-debug") == "on":
        os.environ.setdefault("INVSESS_MALLOC_DEBUG", "1")
    config.addinivalue_line("markers", "allow_leaks: this test leaks on purpose; skip the invsess leak gate")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the ladder of the simulated network to the report of a failed test."""
    report = yield
    network = getattr(item, "funcargs", {}).get("sim_network")
    if report.failed and isinstance(network, SimNetwork) and network.trace:
        report.sections.append(("invsess ladder", network.ladder()))
    return report


@pytest.fixture
def sim_network(request: pytest.FixtureRequest) -> SimNetwork:
    """A simulated network in virtual time, seeded by ``--invsess-seed``."""
    return SimNetwork(seed=request.config.getoption("--invsess-seed"), default=LinkProfile())


class EndpointFactory:
    """Makes endpoints attached to the simulated network; the leak gate checks each one."""

    def __init__(self, network: SimNetwork) -> None:
        self.network = network
        self.endpoints: list[tuple[Endpoint, tuple[str, int]]] = []

    def __call__(self, address: tuple[str, int] | None = None, **config: Any) -> Endpoint:
        """A new endpoint (MALLOC_DEBUG, seeded) at ``address`` (default 127.0.0.N:5060)."""
        address = address or (f"127.0.0.{len(self.endpoints) + 1}", 5060)
        config.setdefault("seed", self.network.seed * 1000 + len(self.endpoints))
        config.setdefault("malloc_debug", True)
        endpoint = Endpoint(EndpointConfig(**config))
        self.network.attach(endpoint, address)
        self.endpoints.append((endpoint, address))
        return endpoint


@pytest.fixture
def endpoint_factory(request: pytest.FixtureRequest, sim_network: SimNetwork) -> Iterator[EndpointFactory]:
    """Endpoints on ``sim_network``; any leak at teardown fails the test (unless allow_leaks)."""
    factory = EndpointFactory(sim_network)
    yield factory
    problems = []
    for endpoint, address in factory.endpoints:
        report = endpoint.close()
        if report:
            problems.append(f"endpoint {address[0]}:{address[1]}:\n{report.format()}")
    if problems and request.node.get_closest_marker("allow_leaks") is None:
        pytest.fail(
            "invsess leak gate: memory still held after the test\n"
            + "\n".join(problems)
            + "\n\nwhat happened on the wire:\n"
            + sim_network.ladder(),
            pytrace=False,
        )
