"""Tutorial, chapter 2: the leak gate catches Kamailio's sanity-module leak in a test.

Run: ``pytest examples/tutorial/gate/test_kamailio_sanity_leak.py`` — the leaky check fails at
teardown with the invsess leak gate's report (three SUBSCRIBEs, three parsed lists left in
Bob's memory, named by the line that allocated them); the fixed check passes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from invsess.inv import SessionLayer
from invsess.testing import SimNetwork
from invsess.testing.plugin import UserAgentFactory
from invsess.transaction import RequestReceived

ALLOW = ("INVITE", "BYE", "OPTIONS", "SUBSCRIBE")


def _chapter() -> Any:
    """The chapter's program, beside this folder (loaded by path: examples are no package)."""
    path = Path(__file__).resolve().parent.parent / "kamailio_sanity_leak.py"
    spec = importlib.util.spec_from_file_location("kamailio_sanity_leak", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chapter = _chapter()
on_request, subscribe = chapter.on_request, chapter.subscribe


def run(network: SimNetwork, bob: SessionLayer, *, fixed: bool) -> None:
    """Run the network until idle, Bob's application screening what arrives."""
    while network.step():
        while (event := bob.next_event()) is not None:
            if isinstance(event, RequestReceived):
                on_request(bob, event.transaction, event.request, network.now, fixed=fixed)


@pytest.mark.virtual_time  # every transaction must end (Timer J: 32 s), in virtual time
@pytest.mark.parametrize("fixed", [False, True], ids=["leaky", "fixed"])
def test_three_bad_subscribes_are_refused(
    ua_factory: UserAgentFactory, sip_network: SimNetwork, fixed: bool
) -> None:
    alice = ua_factory(allow=ALLOW)
    bob = ua_factory(allow=ALLOW)
    for _ in range(3):
        subscribe(alice, bob.endpoint.listeners["udp"], sip_network.now)
        run(sip_network, bob, fixed=fixed)
    # Every SUBSCRIBE got the right answer: a test of the answers alone passes either way.
    assert alice.endpoint.messages.rcv_replies == {(420, "SUBSCRIBE"): 3}
