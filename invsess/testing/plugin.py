"""The invsess pytest plugin, registered through the ``pytest11`` entry point.

* MALLOC_DEBUG is on for every test (``INVSESS_MALLOC_DEBUG=1``) unless ``--invsess-malloc-debug=off``.
* Fixtures: ``virtual_clock`` (timers of sans-IO pieces without a network), ``sip_network``
  (seedable, virtual time; or real loopback UDP sockets and the real
  clock with ``--sip-network=loopback``, the one switch), ``endpoint_factory`` (endpoints on it)
  and ``ua_factory`` (user agents: session layers with their endpoints, on it); and
  ``kamailio_factory`` (real Kamailio instances on loopback, see :mod:`invsess.testing.kamailio`).
* ``call_driver``: reads the events of the ``ua_factory`` user agents while the network runs,
  answers their incoming calls as told and records every state (:class:`CallDriver`).
* The leak gate: at teardown every endpoint made by ``endpoint_factory`` is closed; a live block
  or reference fails the test with the grouped leak report and the ladder of what happened. For
  ``ua_factory`` agents it first names each session still up and its state.
  ``@pytest.mark.allow_leaks`` opts a test out (for tests that leak on purpose).
* Quiet by default: the library's logs below WARNING are dropped (``--invsess-log-level``) unless
  the suite configured structlog itself; pytest-asyncio's fixture loop scope defaults to
  "function" when the suite left it unset (no deprecation warning in a user's run).
* ``--sip-network=loopback`` runs on the real clock: a wait longer than
  ``--sip-loopback-max-wait`` seconds (default 60) fails the test at once, naming the wait,
  instead of taking that long (mark such tests ``virtual_time``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import InviteState, SessionLayer, option_tags
from invsess.sdp import SessionDescription, parse_sdp
from invsess.testing.clock import VirtualClock
from invsess.testing.driver import CallDriver
from invsess.testing.kamailio import Kamailio, KamailioModuleMissingError, find_kamailio
from invsess.testing.loopback import LoopbackNetwork
from invsess.testing.network import LinkProfile, SimNetwork

#: The SDP a ``ua_factory`` user agent offers unless told otherwise.
DEFAULT_SDP = (
    "v=0\r\no=invsess 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


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
    group.addoption(
        "--sip-network",
        choices=("sim", "loopback"),
        default="sim",
        help="sip_network: simulated in virtual time (default) or real UDP sockets on loopback",
    )
    group.addoption(
        "--sip-loopback-max-wait",
        type=float,
        default=60.0,
        help="with --sip-network=loopback, fail a test that would wait longer than this many "
        "real seconds at once (default: 60)",
    )
    group.addoption(
        "--invsess-log-level",
        default="warning",
        help="the library's structlog level in tests, unless the suite configures structlog "
        "itself (default: warning)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Switch MALLOC_DEBUG on, quiet the library's logs, settle pytest-asyncio's loop scope,
    register the markers."""
    if config.getoption("--invsess-malloc-debug") == "on":
        os.environ.setdefault("INVSESS_MALLOC_DEBUG", "1")
    if not structlog.is_configured():
        # Info logs of every call would drown a failure report; the project's own suite does
        # the same in its conftest.
        level = getattr(logging, str(config.getoption("--invsess-log-level")).upper(), logging.WARNING)
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    _default_asyncio_loop_scope(config)
    config.addinivalue_line("markers", "allow_leaks: this test leaks on purpose; skip the invsess leak gate")
    config.addinivalue_line(
        "markers", "virtual_time: this test needs the simulated clock; skipped with --sip-network=loopback"
    )


def _default_asyncio_loop_scope(config: pytest.Config) -> None:
    """pytest-asyncio warns (PytestDeprecationWarning, an error under ``-W error``) in every
    suite that leaves ``asyncio_default_fixture_loop_scope`` unset. Every fixture of this plugin
    is function-scoped, so an unset value becomes "function" (pytest-asyncio's announced
    default); a suite that sets it keeps its own. Runs before pytest-asyncio's configure hook."""
    try:
        if config.getini("asyncio_default_fixture_loop_scope"):
            return
    except ValueError:  # pytest-asyncio is not installed: nothing to settle
        return
    config._inicache["asyncio_default_fixture_loop_scope"] = "function"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the ladder of the simulated network to the report of a failed test."""
    report = yield
    network = getattr(item, "funcargs", {}).get("sip_network")
    if report.failed and isinstance(network, SimNetwork) and network.trace:
        report.sections.append(("invsess ladder", network.ladder()))
    kamailios = getattr(item, "funcargs", {}).get("kamailio_factory")
    if report.failed and isinstance(kamailios, KamailioFactory):
        for n, instance in enumerate(kamailios.instances):
            report.sections.append((f"Kamailio #{n} log (last lines)", instance.log_tail(40)))
    return report


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A virtual clock for sans-IO pieces tested without a network: ``attach(node)``, then
    ``advance(seconds)`` fires each timer at its exact instant (``now`` is the time)."""
    return VirtualClock()


@pytest.fixture
def sip_network(request: pytest.FixtureRequest) -> Iterator[SimNetwork]:
    """The network the test's endpoints are joined by, seeded by ``--invsess-seed``.

    Simulated, in virtual time, by default; with ``--sip-network=loopback`` the same interface
    over real UDP sockets on 127.0.0.0/8 and the real clock (tests marked ``virtual_time``, which
    need a 30-minute call to take milliseconds, are skipped then).
    """
    seed = request.config.getoption("--invsess-seed")
    if request.config.getoption("--sip-network") == "sim":
        yield SimNetwork(seed=seed, default=LinkProfile())
        return
    max_wait = float(request.config.getoption("--sip-loopback-max-wait"))
    with _BoundedLoopback(seed=seed, default=LinkProfile(), max_wait=max_wait) as network:
        yield network


class _BoundedLoopback(LoopbackNetwork):
    """The loopback network, refusing waits that would take minutes of real time: a test
    written for virtual time (``run_until(now + 1800)``) fails at once, saying why, instead of
    silently taking half an hour."""

    def __init__(self, seed: int, *, default: LinkProfile, max_wait: float) -> None:
        super().__init__(seed, default=default)
        self.max_wait = max_wait

    def _refuse(self, wait: float, what: str) -> None:
        pytest.fail(
            f"--sip-network=loopback: {what} would wait {wait:.1f} s of real time (more than "
            f"--sip-loopback-max-wait={self.max_wait:g}). A test that needs virtual time should "
            "be marked @pytest.mark.virtual_time (it is then skipped on loopback); or raise the limit.",
            pytrace=False,
        )

    def run_until(self, until: float) -> None:
        """As LoopbackNetwork.run_until, refusing a wait longer than ``max_wait``."""
        wait = until - self._clock()
        if wait > self.max_wait:
            self._refuse(wait, f"run_until({until:g})")
        super().run_until(until)

    def step(self) -> bool:
        """As LoopbackNetwork.step, refusing to sleep longer than ``max_wait`` for a timer."""
        when = self.next_time()
        if when is not None and when - self._clock() > self.max_wait:
            self._refuse(when - self._clock(), "the next timer (a step of run_until_idle)")
        return super().step()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--sip-network=loopback``, skip the tests marked ``virtual_time``."""
    if config.getoption("--sip-network") != "loopback":
        return
    skip = pytest.mark.skip(reason="needs virtual time (--sip-network=loopback runs on the real clock)")
    for item in items:
        if item.get_closest_marker("virtual_time") is not None:
            item.add_marker(skip)


class EndpointFactory:
    """Makes endpoints attached to the simulated network; the leak gate checks each one."""

    def __init__(self, network: SimNetwork) -> None:
        self.network = network
        self.endpoints: list[tuple[Endpoint, tuple[str, int]]] = []

    def __call__(
        self,
        address: tuple[str, int] | None = None,
        *,
        config: EndpointConfig | None = None,
        transports: tuple[str, ...] = ("udp",),
        **fields: Any,
    ) -> Endpoint:
        """A new endpoint at ``address`` (default 127.0.0.N:5060) listening on ``transports``:
        with ``config`` as given, or one made of ``fields`` (MALLOC_DEBUG on and seeded unless
        they say otherwise)."""
        address = address or (f"127.0.0.{len(self.endpoints) + 1}", 5060)
        if config is None:
            fields.setdefault("seed", self.network.seed * 1000 + len(self.endpoints))
            fields.setdefault("malloc_debug", True)
            config = EndpointConfig(**fields)
        elif fields:
            raise TypeError("give either config or EndpointConfig fields, not both")
        endpoint = Endpoint(config)
        self.network.attach(endpoint, address, transports)
        self.endpoints.append((endpoint, address))
        return endpoint


#: Why a session in this state is still up at the end of a test, by role.
_STILL_UP = {
    (InviteState.CALLING, "UAC"): "no answer yet: hang it up (CANCEL) or let the callee answer",
    (InviteState.INCOMING, "UAS"): "never answered",
    (InviteState.EARLY, "UAS"): "ringing, never answered or rejected",
    (InviteState.EARLY, "UAC"): "ringing at the callee: hang it up (CANCEL) or let it answer",
    (InviteState.CONNECTING, "UAS"): "answered, still waiting for the ACK",
    (InviteState.CONNECTING, "UAC"): "answered, the ACK not sent yet",
    (InviteState.CONFIRMED, "UAC"): "never hung up",
    (InviteState.CONFIRMED, "UAS"): "never hung up",
}


def sessions_still_up(where: str, layer: SessionLayer) -> list[str]:
    """One line per session of ``layer`` that has not ended: who, which call, what state, why."""
    lines = []
    for session in layer.sessions:
        if session.state is InviteState.DISCONNECTED:
            continue  # ended; closing the layer runs its release
        why = _STILL_UP.get((session.state, session.role.name), "not ended")
        state = session.state.name
        lines.append(f"{where}: session {session.call_id} ({session.role.name}) still {state} ({why})")
    return lines


def _leak_gate(
    request: pytest.FixtureRequest,
    network: SimNetwork,
    reports: list[tuple[str, Any]],
    still_up: list[str] | None = None,
) -> None:
    problems = [f"{where}:\n{report.format()}" for where, report in reports if report]
    if problems and request.node.get_closest_marker("allow_leaks") is None:
        first = ""
        if still_up:
            first = (
                "\n".join(still_up)
                + "\n(end every call before the test ends: the references held by 'inv-session' below are"
                " the session layer's own, dropped when the session ends)\n"
            )
        pytest.fail(
            "invsess leak gate: memory still held after the test\n"
            + first
            + "\n".join(problems)
            + "\n\nwhat happened on the wire:\n"
            + network.ladder(),
            pytrace=False,
        )


@pytest.fixture
def endpoint_factory(request: pytest.FixtureRequest, sip_network: SimNetwork) -> Iterator[EndpointFactory]:
    """Endpoints on ``sip_network``; any leak at teardown fails the test (unless allow_leaks)."""
    factory = EndpointFactory(sip_network)
    yield factory
    _leak_gate(request, sip_network, [(f"endpoint {a[0]}:{a[1]}", ep.close()) for ep, a in factory.endpoints])


#: The keyword options that go to the SessionLayer (the rest are EndpointConfig's fields).
_LAYER_OPTIONS = ("timer", "rel100", "keep_forks", "lock_codec", "credentials")


class UserAgentFactory:
    """Makes user agents (a :class:`SessionLayer` on its own endpoint) attached to the network."""

    def __init__(self, network: SimNetwork) -> None:
        self.network = network
        self.agents: list[tuple[SessionLayer, tuple[str, int]]] = []

    def __call__(
        self,
        address: tuple[str, int] | None = None,
        *,
        sdp: SessionDescription | None = None,
        user: str = "invsess",
        **options: Any,
    ) -> SessionLayer:
        """A user agent at ``address`` (default 127.0.0.N:5060, or a free port on real sockets:
        read it from ``layer.endpoint.listeners``). ``options``: SessionLayer's (``timer``,
        ``rel100``, ``keep_forks``, ``lock_codec``, ``credentials``) and EndpointConfig's fields;
        the endpoint is made to match (INVITE, BYE, UPDATE, PRACK, OPTIONS allowed;
        "timer"/"100rel" supported when asked)."""
        n = len(self.agents) + 1
        # The simulated network has every port free; real sockets take a free one.
        address = address or (f"127.0.0.{n}", 0 if isinstance(self.network, LoopbackNetwork) else 5060)
        layer_options = {k: options.pop(k) for k in _LAYER_OPTIONS if k in options}
        options.setdefault("allow", ("INVITE", "BYE", "UPDATE", "PRACK", "OPTIONS"))
        options.setdefault(
            "supported", option_tags(layer_options.get("timer"), layer_options.get("rel100", "off"))
        )
        options.setdefault("seed", self.network.seed * 1000 + 500 + n)
        options.setdefault("malloc_debug", True)
        local = sdp or parse_sdp(DEFAULT_SDP.format(host=address[0], port=40000 + 2 * n))
        layer = SessionLayer(Endpoint(EndpointConfig(**options)), local, user=user, **layer_options)
        self.network.attach(layer, address)
        self.agents.append((layer, layer.endpoint.listeners["udp"]))
        return layer


@pytest.fixture
def ua_factory(request: pytest.FixtureRequest, sip_network: SimNetwork) -> Iterator[UserAgentFactory]:
    """User agents on ``sip_network``; each is closed through its layer at teardown, and any
    leak then fails the test (unless allow_leaks)."""
    factory = UserAgentFactory(sip_network)
    yield factory
    names = [(f"user agent {a[0]}:{a[1]}", layer) for layer, a in factory.agents]
    still_up = [line for where, layer in names for line in sessions_still_up(where, layer)]
    _leak_gate(
        request, sip_network, [(where, layer.close(sip_network.now)) for where, layer in names], still_up
    )


#: Why the Kamailio tests skip when the binary is missing.
KAMAILIO_MISSING = (
    "kamailio is not installed (.ci/run installs the Debian packages kamailio, "
    "kamailio-extra-modules and kamailio-utils-modules; or set INVSESS_KAMAILIO to the binary)"
)


class KamailioFactory:
    """Starts :class:`~invsess.testing.kamailio.Kamailio` instances; stops them all at teardown."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.instances: list[Kamailio] = []

    def __call__(self, config: str | os.PathLike[str], **options: Any) -> Kamailio:
        """A started instance of ``config`` (options: :class:`Kamailio`'s). A module the config
        loads that is not installed skips the test, naming the module."""
        instance = Kamailio(config, binary=self.binary, **options)
        self.instances.append(instance)
        try:
            return instance.start()
        except KamailioModuleMissingError as error:
            pytest.skip(f"Kamailio module {error.module!r} is not installed (kamailio-extra-modules?)")

    def stop_all(self) -> list[Kamailio]:
        """Stop every instance; return those that had died on their own during the test."""
        died = [k for k in self.instances if k.process is not None and not k.stopped and not k.running]
        for instance in self.instances:
            instance.stop()
        return died


@pytest.fixture
def kamailio_factory() -> Iterator[KamailioFactory]:
    """``kamailio_factory(config, defines=..., substs=..., ...)`` starts a real Kamailio on free
    loopback ports and waits until it serves; every instance is stopped at teardown, and one
    that died during the test fails it with its log. Skips when Kamailio is not installed."""
    binary = find_kamailio()
    if binary is None:
        pytest.skip(KAMAILIO_MISSING)
    factory = KamailioFactory(binary)
    yield factory
    died = factory.stop_all()
    if died:
        pytest.fail(
            "Kamailio died during the test:\n"
            + "\n\n".join(
                f"status {k.process.returncode if k.process else None}:\n{k.log_tail(40)}" for k in died
            ),
            pytrace=False,
        )


@pytest.fixture
def call_driver(ua_factory: UserAgentFactory, sip_network: SimNetwork) -> CallDriver:
    """Reads the events of every ``ua_factory`` user agent while the network runs: answers
    incoming calls as told (``call_driver.answer(bob, 180, 200)``), records each session's
    states (``call_driver.states(session)``), and reads past DISCONNECTED so the layer releases
    what it held. ``run(seconds)``, ``run_until(t)``, ``settle()``."""
    return CallDriver(sip_network, lambda: [layer for layer, _ in ua_factory.agents])
