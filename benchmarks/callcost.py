"""The CPU cost of one complete call in the sans-IO core (issue #18): no sockets, no event loop.

What is timed is the side under test only — a :class:`~invsess.inv.SessionLayer` over an
:class:`~invsess.endpoint.Endpoint` (normal memory mode unless said, logging off) — fed bytes
and virtual time the way a driver feeds it: ``receive``, ``next_event`` (its application
answers or hangs up at once), ``datagrams_to_send``, ``next_deadline`` and ``handle_timers``.
The other side is a minimal template peer (requests and responses formatted from templates,
read with one regular expression), so the figures are the side under test's alone.

Flows (each call complete, every transaction it made ended, every pool released):

* ``answer``    the callee: INVITE / 100 / 200 / ACK / BYE / 200 (the caller hangs up);
* ``answer180`` the callee: INVITE / 100 / 180 / 200 / ACK / BYE / 200;
* ``answer-st`` the callee with session timers (RFC 4028) and 100rel (RFC 3262): INVITE / 100 /
  reliable 180 / PRACK / 200 (PRACK) / 200 / ACK / BYE / 200;
* ``call``      the caller (a SessionLayer placing calls, as a B2BUA's outgoing leg does):
  INVITE / 100 / 200 / ACK, then our BYE / 200.

Calls follow each other every ``--spacing`` ms of virtual time (default 2 ms: 500 calls/s);
after each round the virtual clock runs on until every lingering transaction (Timers J, K, L,
M: up to 64*T1 = 32 s) has ended, and that timer work is part of the round's cost. CPU time is
``time.process_time`` summed around the calls into the side under test; each figure is the
best of ``--rounds`` rounds (other processes can only make a round slower). For each flow:
the cost at 0, 1,000 and 10,000 other calls up (idle confirmed calls set up first), and with
MALLOC_DEBUG on; printed with ratios against the first column, measured in the same run.

``--profile`` also profiles the normal-mode ``answer`` and ``call`` flows with cProfile and
prints the top functions by own time and the share of the memory model's book-keeping
(everything in ``invsess/memory/``: pool and block allocation, add_ref/dec_ref, release,
statistics) in the total (target <= 10%). cProfile's per-call overhead weighs most on parts
made of many small calls (the parser more than the memory model), so its shares are skewed:
``--sampled`` gives a sampling profiler's.

    python benchmarks/callcost.py                      # all flows, 0 / 1,000 / 10,000 up
    python benchmarks/callcost.py --flows answer --up 0 --calls 2000 --profile

``--sampled RAW`` reads a py-spy raw profile of this script instead and prints the same shares
from samples (each charged to the innermost invsess frame), which cProfile's overhead does not
distort:

    py-spy record -r 400 -f raw -o call.raw -- python benchmarks/callcost.py --flows answer call \\
        --up 0 --calls 3000 --rounds 2 --no-debug
    python benchmarks/callcost.py --sampled call.raw

``--collector`` measures each flow in one process with the cycle collector on and off,
alternately, round by round (the calls make no garbage cycles: ``tests/test_no_cycles.py``).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from invsess.address import Address
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import IncomingCall, InviteState, SessionLayer, SessionStateChanged, TimerSettings
from invsess.sdp import parse_sdp
from invsess.transaction import TimerConfig

CALLER: Address = ("127.0.0.1", 5060)
CALLEE: Address = ("127.0.0.2", 5060)
SDP = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
PEER_SDP = SDP.replace("caller", "callee").replace("127.0.0.1", "127.0.0.2").replace("4000", "6000")
LOCAL_SDP = parse_sdp(SDP)
ANSWER_SDP = parse_sdp(PEER_SDP)

# -- the template caller (for the answering flows) ---------------------------------------------

INVITE = (
    "INVITE sip:callee@127.0.0.2:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKi{n}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:caller@127.0.0.1>;tag=c{n}\r\n"
    "To: <sip:callee@127.0.0.2>\r\n"
    "Call-ID: call-{n}@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:caller@127.0.0.1:5060>\r\n"
    "Allow: INVITE, ACK, BYE, CANCEL, UPDATE, PRACK\r\n"
    "{extra}"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
)
INVITE_ST = "Supported: timer, 100rel\r\nSession-Expires: 1800;refresher=uac\r\n"
IN_DIALOG = (
    "{method} sip:caller@127.0.0.2:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:caller@127.0.0.1>;tag=c{n}\r\n"
    "To: <sip:callee@127.0.0.2>;tag={to_tag}\r\n"
    "Call-ID: call-{n}@127.0.0.1\r\n"
    "CSeq: {cseq}\r\n"
    "{extra}"
    "Content-Length: 0\r\n\r\n"
)
_TO_TAG = re.compile(rb"\r\nTo: [^\r]*;tag=([^;\r]+)")
_RSEQ = re.compile(rb"\r\nRSeq: (\d+)")


def _status(data: bytes) -> int:
    return int(data[8:11]) if data.startswith(b"SIP/2.0 ") else 0


# -- the template callee (for the calling flow) ------------------------------------------------

_COPIED = re.compile(rb"\r\n((?:Via|From|To|Call-ID|CSeq): [^\r]*)")
_METHOD = re.compile(rb"^(\w+) ")


def _response(request: bytes, code: int, reason: str, *, to_tag: str | None, body: str = "") -> bytes:
    lines = [f"SIP/2.0 {code} {reason}".encode()]
    for line in _COPIED.findall(request):
        tagged = to_tag is not None and line.startswith(b"To: ") and b";tag=" not in line
        lines.append(line + f";tag={to_tag}".encode() if tagged else line)
    if 100 < code < 300:
        lines.append(b"Contact: <sip:callee@127.0.0.2:5060>")
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body.encode()


# -- the side under test -----------------------------------------------------------------------


def _layer(flow: str, address: Address, *, malloc_debug: bool, seed: int) -> SessionLayer:
    timers = flow == "answer-st"
    config = EndpointConfig(
        seed=seed,
        malloc_debug=malloc_debug,
        allow=("INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "PRACK", "OPTIONS"),
        supported=("timer", "100rel"),
        # The endpoint sends 100 Trying at once, as PJSIP does (the flow of the figures).
        timers=TimerConfig(trying_delay=0.0),
        max_transactions=10_000_000,  # calls up and lingering transactions are what is measured
        total_memory=4 * 1024**3,
    )
    layer = SessionLayer(
        Endpoint(config),
        ANSWER_SDP if flow.startswith("answer") else LOCAL_SDP,
        user="callee" if flow.startswith("answer") else "caller",
        timer=TimerSettings(session_expires=1800) if timers else None,
        rel100="supported" if timers else "off",
    )
    layer.add_listener("udp", address)
    return layer


class Bench:
    """One side under test and its template peer; :meth:`call` runs one complete call."""

    def __init__(self, flow: str, *, malloc_debug: bool, seed: int = 1) -> None:
        self.flow = flow
        self.answering = flow.startswith("answer")
        self.layer = _layer(flow, CALLEE if self.answering else CALLER, malloc_debug=malloc_debug, seed=seed)
        self.now = 0.0
        self.cpu = 0.0  # process time spent in the side under test
        self.serial = 0
        self.timing = True

    # Everything the side under test does goes through here: timed.
    def _timed(self, fn: Callable[[], Any]) -> Any:
        if not self.timing:  # profiled: the profiler's clock is the one that counts
            return fn()
        t0 = time.process_time()
        result = fn()
        self.cpu += time.process_time() - t0
        return result

    def _feed(self, data: bytes) -> list[bytes]:
        """Deliver ``data`` to the side under test, run its application, return what it sends."""
        layer, now = self.layer, self.now
        peer = CALLER if self.answering else CALLEE

        def step() -> list[bytes]:
            layer.receive(data, peer, "udp", now)
            self._application(now)
            return [o.data for o in layer.datagrams_to_send()]

        return self._timed(step)  # type: ignore[no-any-return]

    def _application(self, now: float) -> None:
        """Answer at once (with 180 first in the ringing flows); hang up once confirmed (caller)."""
        layer = self.layer
        while (event := layer.next_event()) is not None:
            if isinstance(event, IncomingCall):
                if self.flow != "answer":
                    layer.answer(event.session, 180, now)
                layer.answer(event.session, 200, now)
            elif (
                isinstance(event, SessionStateChanged)
                and not self.answering
                and event.new is InviteState.CONFIRMED
                and not self.hold
            ):
                layer.hangup(event.session, now)

    def _timers(self) -> list[bytes]:
        """What a driver does as time passes: fire what is due."""
        layer, now = self.layer, self.now

        def step() -> list[bytes]:
            deadline = layer.next_deadline()
            if deadline is not None and deadline <= now:
                layer.handle_timers(now)
                self._application(now)
            return [o.data for o in layer.datagrams_to_send()]

        return self._timed(step)  # type: ignore[no-any-return]

    def _tick(self, dt: float) -> None:
        self.now += dt
        out = self._timers()
        if out and self.answering:
            raise RuntimeError(f"unexpected sends by the callee: {out[0][:40]!r}")
        for data in out:  # the caller's BYE of a call whose 200 is not there yet, retransmitted?
            if not data.startswith(b"BYE"):
                raise RuntimeError(f"unexpected send by the caller: {data[:40]!r}")

    hold = False

    def call(self, *, hold: bool = False) -> None:
        """One complete call (``hold``: set it up and leave it up)."""
        self.serial += 1
        self.hold = hold
        if self.answering:
            self._answered_call(self.serial, hold)
        else:
            self._placed_call(hold)

    def _answered_call(self, n: int, hold: bool) -> None:
        st = self.flow == "answer-st"
        out = self._feed(INVITE.format(n=n, extra=INVITE_ST if st else "").encode())
        codes = [_status(d) for d in out]
        if st:  # the reliable 180: PRACK it; the 200 comes once it is acknowledged
            if codes != [100, 180]:
                raise RuntimeError(f"INVITE answered with {codes}")
            rseq = int(_RSEQ.search(out[1]).group(1))  # type: ignore[union-attr]
            to_tag = _TO_TAG.search(out[1]).group(1).decode()  # type: ignore[union-attr]
            self._tick(0.0005)
            prack = IN_DIALOG.format(method="PRACK", branch=f"p{n}", n=n, to_tag=to_tag, cseq="2 PRACK",
                                     extra=f"RAck: {rseq} 1 INVITE\r\n")  # fmt: skip
            out = self._feed(prack.encode())
            codes = [_status(d) for d in out]
            if codes != [200, 200]:
                raise RuntimeError(f"PRACK answered with {codes}")
            bye_cseq = 3
        else:
            want = [100, 200] if self.flow == "answer" else [100, 180, 200]
            if codes != want:
                raise RuntimeError(f"INVITE answered with {codes}")
            to_tag = _TO_TAG.search(out[-1]).group(1).decode()  # type: ignore[union-attr]
            bye_cseq = 2
        self._tick(0.0005)
        ack = IN_DIALOG.format(method="ACK", branch=f"a{n}", n=n, to_tag=to_tag, cseq="1 ACK", extra="")
        if self._feed(ack.encode()):
            raise RuntimeError("the ACK was answered")
        if hold:
            return
        self._tick(0.0005)
        bye = IN_DIALOG.format(
            method="BYE", branch=f"b{n}", n=n, to_tag=to_tag, cseq=f"{bye_cseq} BYE", extra=""
        )
        out = self._feed(bye.encode())
        if [_status(d) for d in out] != [200]:
            raise RuntimeError(f"BYE answered with {out}")

    def _placed_call(self, hold: bool) -> None:
        layer, now = self.layer, self.now

        def place() -> list[bytes]:
            layer.invite("sip:callee@127.0.0.2:5060", destination=CALLEE, now=now)
            self._application(now)
            return [o.data for o in layer.datagrams_to_send()]

        out = self._timed(place)
        invite = out[0]
        if not invite.startswith(b"INVITE "):
            raise RuntimeError(f"the caller sent {invite[:40]!r}")
        tag = f"t{self.serial}"
        self._tick(0.0005)
        self._feed(_response(invite, 100, "Trying", to_tag=None))
        out = self._feed(_response(invite, 200, "OK", to_tag=tag, body=PEER_SDP))
        if not out or not out[0].startswith(b"ACK "):
            raise RuntimeError(f"no ACK for the 200: {out}")
        if hold:
            return
        if len(out) != 2 or not out[1].startswith(b"BYE "):
            raise RuntimeError(f"no BYE: {out}")
        self._tick(0.0005)
        if self._feed(_response(out[1], 200, "OK", to_tag=None)):
            raise RuntimeError("the 200 to the BYE was answered")

    def settle(self) -> None:
        """Run the clock until every transaction is over (timed: it is the calls' linger cost)."""
        layer = self.layer
        end = self.now + 64 * 0.5 + 1
        while (deadline := self._timed(layer.next_deadline)) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self._tick(0.0)
        self.now = end

    def round(self, calls: int, spacing: float) -> float:
        """CPU seconds per call over ``calls`` calls ``spacing`` apart, linger included."""
        endpoint = self.layer.endpoint
        pools = len(endpoint.factory.pools)
        self.cpu = 0.0
        for _ in range(calls):
            self.call()
            self._tick(spacing)
        self.settle()
        if len(endpoint.factory.pools) != pools or endpoint.transactions():
            raise RuntimeError(f"pools {pools} -> {len(endpoint.factory.pools)}: a call leaked")
        return self.cpu / calls

    def set_up(self, n: int) -> None:
        """``n`` other calls up (confirmed, idle) before measuring."""
        for _ in range(n):
            self.call(hold=True)
            self._tick(0.0001)
        self.settle()
        up = len(self.layer.sessions)
        if up != n:
            raise RuntimeError(f"{up} of {n} calls up")


def measure(flow: str, up: int, *, malloc_debug: bool, calls: int, rounds: int, spacing: float) -> float:
    """Best per-call CPU seconds of ``rounds`` rounds."""
    bench = Bench(flow, malloc_debug=malloc_debug)
    bench.set_up(up)
    bench.round(min(calls, 200), spacing)  # warm up: caches, interned sites
    gc.collect()
    best = float("inf")
    for _ in range(rounds):
        best = min(best, bench.round(calls, spacing))
    return best


# -- profile ---------------------------------------------------------------------------------


def _area(filename: str) -> str | None:
    """The part of invsess a function belongs to (``sip``, ``memory``, ``inv`` ...), "harness"
    for this script, None for anything else (the standard library, attrs, builtins)."""
    i = filename.rfind("invsess/")
    if i >= 0:
        parts = filename[i:].split("/")
        return parts[1] if len(parts) > 2 else parts[1].removesuffix(".py")
    if filename.endswith("callcost.py"):
        return "harness"
    return None


def _by_area(raw: dict[Any, Any]) -> dict[str, float]:
    """Own time per area; time in functions of no area (a dict method, attrs.evolve, an enum's
    ``__hash__``) goes to the areas of their callers, in proportion to the time each caused."""
    areas: dict[str, float] = {}

    def charge(key: Any, seconds: float, depth: int) -> None:
        area = _area(key[0])
        callers = raw[key][4] if key in raw else {}
        if area is None and callers and depth < 8:
            caused = sum(v[2] for v in callers.values()) or 1.0
            for caller, v in callers.items():
                charge(caller, seconds * v[2] / caused, depth + 1)
            return
        area = area or "other"
        areas[area] = areas.get(area, 0.0) + seconds

    for key, (_, _, tottime, _, _) in raw.items():
        charge(key, tottime, 0)
    return areas


def profile(flow: str, calls: int, spacing: float, top: int) -> None:
    """cProfile of ``calls`` normal-mode calls: the top functions, the time by part of invsess,
    and the memory model's share of the side under test's time (the harness left out)."""
    bench = Bench(flow, malloc_debug=False)
    bench.round(200, spacing)
    bench.timing = False
    profiler = cProfile.Profile()
    profiler.enable()
    bench.round(calls, spacing)
    profiler.disable()
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    areas = _by_area(raw)
    harness = areas.pop("harness", 0.0)
    total = sum(areas.values())
    rows = sorted(
        ((tottime, cumtime, ncalls, f"{_short(filename)}:{line}({name})")
         for (filename, line, name), (_, ncalls, tottime, cumtime, _) in raw.items()
         if _area(filename) != "harness"),
        reverse=True,
    )  # fmt: skip
    print(f"\nprofile of {calls} '{flow}' calls (cProfile; shares of the side under test's time)")
    print(f"{'own %':>6} {'cum %':>6} {'calls/call':>10}  function")
    for tottime, cumtime, ncalls, where in rows[:top]:
        share, cumulative = 100 * tottime / total, 100 * cumtime / total
        print(f"{share:>6.1f} {cumulative:>6.1f} {ncalls / calls:>10.1f}  {where}")
    print("by part of invsess (own time; library and builtin calls charged to their callers):")
    for area, seconds in sorted(areas.items(), key=lambda item: -item[1]):
        print(f"  {area:<12} {100 * seconds / total:>5.1f}%")
    print(f"  (harness: {100 * harness / (total + harness):.1f}% of the whole profile, left out)")
    share = 100 * areas.get("memory", 0.0) / total
    print(f"memory model book-keeping (invsess/memory/): {share:.1f}% of the profile (target <= 10%)")


def sampled(raw_file: str) -> None:
    """Shares by part of invsess from a py-spy raw profile of this script (``py-spy record -f
    raw``): each sample inside the side under test is charged to the innermost invsess frame
    (a sampling profiler adds nothing per call, so small functions are not overweighted)."""
    flows = {"answering": "Bench._answered_call", "calling": "Bench._placed_call"}
    counts: dict[str, dict[str, int]] = {flow: {} for flow in flows}
    frame_file = re.compile(r"\((.*?):\d+\)$")
    with open(raw_file, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if not any(f.startswith("Bench._timed ") for f in frames):
                continue
            flow = next((k for k, marker in flows.items() if any(f.startswith(marker) for f in frames)), None)
            if flow is None:
                continue
            files = [m.group(1) for f in frames if (m := frame_file.search(f)) is not None]
            inner = [f for f in files if "invsess/" in f]
            area = (
                (inner[-1].split("invsess/", 1)[1].split("/")[0].removesuffix(".py")) if inner else "harness"
            )
            counts[flow][area] = counts[flow].get(area, 0) + int(count)
    for flow, areas in counts.items():
        harness = areas.pop("harness", 0)
        total = sum(areas.values())
        if not total:
            continue
        shares = ", ".join(
            f"{a} {100 * n / total:.1f}%" for a, n in sorted(areas.items(), key=lambda i: -i[1])
        )
        print(f"{flow}: {total} samples in the side under test ({harness} in the harness left out)")
        print(f"  {shares}")
        share = 100 * areas.get("memory", 0) / total
        print(f"  memory model book-keeping (invsess/memory/): {share:.1f}% (target <= 10%)")


def collector(flows: list[str], calls: int, rounds: int, spacing: float) -> None:
    """Each flow in one process with the cycle collector on and off, alternately, round by
    round: what the collector's passes cost a call when the calls make no cycles."""
    print(f"{'flow':<10} {'collector on µs':>16} {'off µs':>8} {'off/on':>7}")
    for flow in flows:
        bench = Bench(flow, malloc_debug=False)
        bench.round(min(calls, 200), spacing)
        on, off = float("inf"), float("inf")
        try:
            for _ in range(rounds):
                gc.enable()
                gc.collect()
                on = min(on, bench.round(calls, spacing))
                gc.disable()
                off = min(off, bench.round(calls, spacing))
        finally:
            gc.enable()
        print(f"{flow:<10} {on * 1e6:>16.1f} {off * 1e6:>8.1f} {off / on:>7.2f}", flush=True)


def _short(filename: str) -> str:
    for marker in ("invsess/", "benchmarks/", "lib/python"):
        i = filename.find(marker)
        if i >= 0:
            return filename[i:]
    return filename


FLOWS = ("answer", "answer180", "answer-st", "call")


def _cell(args: argparse.Namespace, flow: str, up: int, debug: bool, tree: str | None) -> float:
    """One figure, measured here, or (``tree``) by this script run on another source tree."""
    if tree is None:
        return measure(flow, up, malloc_debug=debug, calls=args.calls, rounds=args.rounds,
                       spacing=args.spacing / 1000)  # fmt: skip
    command = [sys.executable, __file__, "--cell", flow, str(up), str(int(debug)), "--calls", str(args.calls),
               "--rounds", str(args.rounds), "--spacing", str(args.spacing)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return float(json.loads(done.stdout)["cost"])


def main() -> None:
    """Measure each flow and print the table with ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", nargs="+", choices=FLOWS, default=list(FLOWS))
    parser.add_argument("--up", type=int, nargs="+", default=[0, 1_000, 10_000], help="other calls up")
    parser.add_argument("--calls", type=int, default=1000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spacing", type=float, default=2.0, help="ms of virtual time between calls")
    parser.add_argument("--no-debug", action="store_true", help="skip the MALLOC_DEBUG column")
    parser.add_argument("--profile", action="store_true", help="profile the answer and call flows too")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile")
    parser.add_argument(
        "--baseline",
        metavar="TREE",
        help="also measure the invsess package under TREE (e.g. main's, from git archive) in the "
        "same run, alternating cell by cell, and print after/before ratios",
    )
    parser.add_argument(
        "--collector",
        action="store_true",
        help="measure each flow (normal mode, 0 up) with the cycle collector on and off instead",
    )
    parser.add_argument(
        "--sampled",
        metavar="RAW",
        help="print the shares by part of invsess from a py-spy raw profile of this script and exit",
    )
    parser.add_argument("--cell", nargs=3, help=argparse.SUPPRESS)  # flow up debug: one figure as JSON
    args = parser.parse_args()
    if args.sampled:
        sampled(args.sampled)
        return
    if args.collector:
        collector(args.flows, args.calls, args.rounds, args.spacing / 1000)
        return
    if args.cell:
        flow, up, debug = args.cell[0], int(args.cell[1]), bool(int(args.cell[2]))
        print(json.dumps({"cost": _cell(args, flow, up, debug, None)}))
        return
    if args.baseline:
        compare(args)
        return
    spacing = args.spacing / 1000
    header = "".join(f"{f'{n:,} up µs':>14} {'ratio':>6}" for n in args.up)
    print(f"{'flow':<10}{header} {'DEBUG µs':>10} {'ratio':>6} {'calls/s of CPU':>15}")
    for flow in args.flows:
        costs = [
            measure(flow, n, malloc_debug=False, calls=args.calls, rounds=args.rounds, spacing=spacing)
            for n in args.up
        ]
        cells = "".join(f"{c * 1e6:>14.1f} {c / costs[0]:>6.2f}" for c in costs)
        if args.no_debug:
            debug_cells = f"{'-':>10} {'-':>6}"
        else:
            cost = measure(flow, args.up[0], malloc_debug=True, calls=args.calls, rounds=args.rounds,
                           spacing=spacing)  # fmt: skip
            debug_cells = f"{cost * 1e6:>10.1f} {cost / costs[0]:>6.2f}"
        print(f"{flow:<10}{cells} {debug_cells} {1 / costs[0]:>15,.0f}", flush=True)
    print("\nratios: against the first column (MALLOC_DEBUG: same calls up; target <= 1.2x)")
    if args.profile:
        for flow in ("answer", "call"):
            if flow in args.flows:
                profile(flow, args.calls, spacing, args.top)


def compare(args: argparse.Namespace) -> None:
    """Each cell measured on the baseline tree and on this one, alternately, each in a fresh
    process; the ratio is this tree's cost over the baseline's."""
    import invsess

    here = os.path.dirname(os.path.dirname(os.path.abspath(invsess.__file__)))
    print(f"baseline: {os.path.abspath(args.baseline)}   this tree: {here}")
    columns = f"{'before µs':>10} {'after µs':>10} {'after/before':>13} {'speed-up':>9}"
    print(f"{'flow':<10} {'up':>7} {'mode':<6} {columns}")
    for flow in args.flows:
        for up in args.up:
            for debug in (False,) if args.no_debug else (False, True):
                before = _cell(args, flow, up, debug, args.baseline)
                after = _cell(args, flow, up, debug, here)
                mode = "DEBUG" if debug else "normal"
                print(f"{flow:<10} {up:>7} {mode:<6} {before * 1e6:>10.1f} {after * 1e6:>10.1f} "
                      f"{after / before:>13.2f} {before / after:>8.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
