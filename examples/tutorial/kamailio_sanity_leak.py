"""Tutorial, chapter 2: the package-memory leak of Kamailio's sanity module (kamailio GH #1990).

Run: ``python examples/tutorial/kamailio_sanity_leak.py`` (the leak, and how the statistics show
it), ``--fixed`` (the fix: flat). ``INVSESS_MALLOC_DEBUG=1`` changes nothing there: a leak is not
a touch of freed memory; the statistics, the snapshot diff and the leak report find it. It does
change ``--first-fix``: a fix that frees the list and then reads the extension's name from it,
which "works" without MALLOC_DEBUG and fails at once with it.

Bob is a proxy that screens each request the way Kamailio's ``sanity_check()`` does. Its
Proxy-Require check parses the header into a list in package memory that the message does not
own — whoever parses it must free it — and frees it only when the check passes. Alice is a
misconfigured phone that SUBSCRIBEs again and again with ``Proxy-Require: sip.example.com``.
Every SUBSCRIBE gets the right answer, 420 Bad Proxy Require Extension; every one leaves its
parsed list behind. The program watches Bob the way an operator would: ``pkg.stats`` over
JSON-RPC after each round, then ``invsess.snapshot`` and ``invsess.diff`` around the last one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import SessionLayer
from invsess.logs import configure
from invsess.memory import Block, Pool, PoolFactory, UseAfterFreeError
from invsess.monitor import MonitorMethods, MonitorTarget
from invsess.sdp import parse_sdp
from invsess.sip import NameAddress, Request, make_request, make_response, parse_uri
from invsess.testing.network import SimNetwork
from invsess.transaction import RequestReceived, ServerTransaction

ALICE, BOB = ("127.0.0.1", 5060), ("127.0.0.2", 5060)
#: The extensions Bob, the proxy, supports (Kamailio's sanity ``proxy_require`` parameter).
SUPPORTED = ("sip.example.net",)
ROUNDS, PER_ROUND = 4, 250


# --8<-- [start:check]
class StrList(Block):
    """One node of a parsed header list (Kamailio's ``struct str_list``)."""

    __slots__ = ("next", "text")

    def __init__(self, text: str, nxt: StrList | None) -> None:
        self.text = text
        self.next = nxt


def parse_proxy_require(request: Request, pkg: PoolFactory) -> tuple[Pool, StrList] | None:
    """Parse Proxy-Require into a list in package memory (Kamailio's ``parse_proxyrequire``).
    The message does not own the list: the caller must release its pool."""
    tags = request.proxy_require
    if not tags:
        return None
    pool = pkg.create_pool("hdr-proxy-require", 256, 256)
    head = None
    for tag in reversed(tags):
        head = pool.alloc(StrList, tag, head)
    assert head is not None
    return pool, head


def check_proxy_require(
    request: Request, pkg: PoolFactory, *, fixed: bool, first_fix: bool = False
) -> tuple[int, str, str] | None:
    """Kamailio's ``check_proxy_require``: None when every extension is supported, else the
    answer (420, its reason, the Unsupported header's value)."""
    parsed = parse_proxy_require(request, pkg)
    if parsed is None:
        return None
    pool, head = parsed
    node: StrList | None = head
    while node is not None:
        if node.text not in SUPPORTED:
            if first_fix:  # a first attempt at the fix: free, then read the name from the list
                pool.release("proxy require check failed")
                return 420, "Bad Proxy Require Extension", node.text
            unsupported = node.text
            if fixed:
                pool.release("proxy require check failed")  # the fix: free on this path too
            return 420, "Bad Proxy Require Extension", unsupported
        node = node.next
    pool.release("proxy require checked")  # only when the check passes
    return None


# --8<-- [end:check]


def on_request(
    layer: SessionLayer,
    tx: ServerTransaction[Any],
    request: Request,
    now: float,
    *,
    fixed: bool,
    first_fix: bool = False,
) -> None:
    """Bob's screening of a request outside any dialog: 420 when the check fails, else 200."""
    endpoint = layer.endpoint
    failure = check_proxy_require(request, endpoint.factory, fixed=fixed, first_fix=first_fix)
    if failure is None:
        endpoint.respond(tx, make_response(request, 200, to_tag=endpoint.new_tag()), now)
        return
    code, reason, unsupported = failure
    answer = make_response(
        request, code, reason, to_tag=endpoint.new_tag(), headers=[("Unsupported", unsupported)]
    )
    endpoint.respond(tx, answer, now)


def agent(net: SimNetwork, address: tuple[str, int], user: str, seed: int) -> SessionLayer:
    """A user agent on the simulated network that takes SUBSCRIBE (and calls)."""
    host = address[0]
    sdp = parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {40000 + 2 * seed} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    config = EndpointConfig(seed=seed, allow=("INVITE", "BYE", "OPTIONS", "SUBSCRIBE"))
    layer = SessionLayer(Endpoint(config), sdp, user=user)
    net.attach(layer, address)
    return layer


def subscribe(alice: SessionLayer, proxy: tuple[str, int], now: float) -> None:
    """The misconfigured phone's SUBSCRIBE to ``proxy`` (the request of GH #1990)."""
    endpoint = alice.endpoint
    host, port = endpoint.listeners["udp"]
    to_host, to_port = proxy
    request = make_request(
        "SUBSCRIBE",
        f"sip:phone_0@{to_host}:{to_port}",
        via=endpoint.via("udp"),
        from_=NameAddress(parse_uri(f"sip:phone_0@{host}"), None, (("tag", endpoint.new_tag()),)),
        to=NameAddress(parse_uri(f"sip:phone_0@{to_host}")),
        call_id=f"{endpoint.new_tag()}@{host}",
        cseq=1,
        contact=NameAddress(parse_uri(f"sip:phone_0@{host}:{port}")),
        headers=[("Event", "as-feature-event"), ("Expires", "3630"), ("Proxy-Require", "sip.example.com")],
    )
    endpoint.send_request(request, proxy, "udp", now)


def rpc(methods: MonitorMethods, method: str, *params: Any) -> Any:
    """One JSON-RPC call, as ``curl -d '{"jsonrpc": ...}' http://.../RPC`` would make it."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).encode()
    _, answer = methods.dispatcher().handle(body)
    assert answer is not None
    return json.loads(answer)["result"]


def main(fixed: bool, first_fix: bool = False) -> int:
    """Rounds of SUBSCRIBEs, Bob's pkg.stats after each, the snapshot diff of the last round."""
    configure("error")
    net = SimNetwork(seed=1)
    alice, bob = agent(net, ALICE, "alice", 1), agent(net, BOB, "bob", 2)
    monitor = MonitorMethods(
        [MonitorTarget("alice", alice.endpoint), MonitorTarget("bob (the proxy)", bob.endpoint)]
    )
    answered: dict[int, int] = {}

    def pump(until: float | None = None) -> None:
        """Run the network (up to ``until``, or until idle), Bob's application answering."""
        net.flush()  # what the nodes queued goes on the wire first
        while (when := net.next_time()) is not None and (until is None or when <= until):
            net.step()
            while (event := bob.next_event()) is not None:
                if isinstance(event, RequestReceived):
                    on_request(
                        bob, event.transaction, event.request, net.now, fixed=fixed, first_fix=first_fix
                    )
        if until is not None:
            net.run_until(until)  # nothing is due before: only the clock moves

    def run_round() -> None:
        for _ in range(PER_ROUND):  # a hundred a second, then every transaction ends
            subscribe(alice, BOB, net.now)
            pump(net.now + 0.01)
        pump()

    print(f"{'SUBSCRIBEs':>10}  {'answers':<10} {'pkg.stats used':>14} {'real_used':>10}  (Bob, the proxy)")
    for n in range(ROUNDS + 1):
        if n == ROUNDS:
            rpc(monitor, "invsess.snapshot")  # an operator's snapshot before the last round
        if n:
            run_round()
        for (code, method), count in alice.endpoint.messages.rcv_replies.items():
            if method == "SUBSCRIBE":
                answered[code] = count
        bob_row = rpc(monitor, "pkg.stats", "index", 1)[0]
        shown = ", ".join(f"{code} x{count}" for code, count in sorted(answered.items())) or "-"
        print(f"{n * PER_ROUND:>10}  {shown:<10} {bob_row['used']:>14} {bob_row['real_used']:>10}")
    print()
    print("invsess.diff after the last round (JSON-RPC, Bob):")
    diff = next(d for d in rpc(monitor, "invsess.diff", 5) if d["endpoint"].startswith("bob"))
    print(diff["report"] or "nothing grew")
    print()
    for name, layer in (("alice", alice), ("bob", bob)):
        report = layer.close(net.now)
        if not report:
            print(f"{name}: {report.format()}")
            continue
        # The report's own first line lists every live pool by name: a thousand of them here.
        pools = len(report.pools)
        print(
            f"{name}: {report.total_blocks} leaked blocks, {report.total_size} bytes, in {pools} live pools"
        )
        print("\n".join(report.format().splitlines()[1:]))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fixed", action="store_true", help="free the parsed list on the failure path too")
    parser.add_argument("--first-fix", action="store_true", help="free it there, then read from it")
    args = parser.parse_args()
    try:
        sys.exit(main(args.fixed, args.first_fix))
    except UseAfterFreeError as err:
        print(err.report.format())  # the report MALLOC_DEBUG raised, then exit 1
        sys.exit(1)
