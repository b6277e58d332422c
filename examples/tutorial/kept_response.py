"""Tutorial, chapter 6: a test helper that kept responses past their event (this project).

Run: ``python examples/tutorial/kept_response.py`` (normal mode: the checks pass),
``INVSESS_MALLOC_DEBUG=1 python ...`` (the report), ``--fixed``.

An endpoint hands a received response to the application in a ``ResponseReceived`` event, and
the message lives in a pool of its own until the application asks for the next event
(``Endpoint.next_event``). invsess's first test helper collected the responses of an exchange
in a list and checked them afterwards, exactly like ``Collector`` below.
"""

from __future__ import annotations

from chapter import run

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.logs import configure
from invsess.sip import NameAddress, Request, Response, make_request, parse_uri
from invsess.testing import SimNetwork
from invsess.transaction import ResponseReceived

ALICE, BOB = ("127.0.0.1", 5060), ("127.0.0.2", 5060)


# --8<-- [start:collector]
class Collector:
    """Reads an endpoint's events and keeps the responses, to check them after the exchange."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.responses: list[Response] = []
        self.statuses: list[int] = []

    def collect(self) -> None:
        while (event := self.endpoint.next_event()) is not None:  # frees the previous event's message
            if isinstance(event, ResponseReceived):
                self.responses.append(event.response)  # kept past its event
                self.statuses.append(event.response.status_code)  # the fix: keep plain values

    def check(self) -> None:
        for response in self.responses:
            assert response.status_code == 200, response.status_code

    def check_fixed(self) -> None:
        assert self.statuses == [200] * len(self.statuses), self.statuses


# --8<-- [end:collector]


def options(endpoint: Endpoint, n: int) -> Request:
    """An OPTIONS request from ``endpoint`` to Bob."""
    return make_request(
        "OPTIONS",
        "sip:bob@127.0.0.2:5060",
        via=endpoint.via("udp"),
        from_=NameAddress(parse_uri("sip:alice@127.0.0.1:5060"), None, (("tag", f"t{n}"),)),
        to=NameAddress(parse_uri("sip:bob@127.0.0.2:5060")),
        call_id=f"options-{n}@127.0.0.1",
        cseq=1,
    )


def main(net: SimNetwork, fixed: bool) -> None:
    """Alice pings Bob three times, then checks the answers."""
    configure("error")  # structlog: the library's own logs only when something is wrong
    alice = Endpoint(EndpointConfig(seed=1))
    bob = Endpoint(EndpointConfig(seed=2))  # answers OPTIONS by itself
    net.attach(alice, ALICE)
    net.attach(bob, BOB)
    collector = Collector(alice)
    for n in range(3):
        alice.send_request(options(alice, n), BOB, "udp", net.now)
        net.run_until(net.now + 1.0)
        collector.collect()
    if fixed:
        collector.check_fixed()
    else:
        collector.check()
    print(f"{len(collector.statuses)} responses checked: {collector.statuses}")
    net.run_until_idle()
    collector.collect()
    for name, endpoint in (("alice", alice), ("bob", bob)):
        print(f"{name}: {endpoint.close().format()}")


if __name__ == "__main__":
    run(main, __doc__, fixed="keep plain values, not the messages")
