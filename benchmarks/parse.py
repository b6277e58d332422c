"""Parser throughput: parse + read the usual headers + serialise, invsess vs sippy, in one run.

Run: ``pip install sippy`` then ``python benchmarks/parse.py [--seconds S]``.

Corpus: a real call flow (INVITE/100/180/200/ACK/BYE/200 with SDP) and the RFC 4475 messages
that both parsers accept. Work per message, for both: parse the bytes, read the top Via branch,
From tag, To tag, Call-ID and CSeq, and serialise. Three figures each:

* ``as received`` - serialise the message unmodified (invsess returns the received bytes,
  which is its design: "serialised once, retransmitted from bytes");
* ``modified`` - add a Via on top first, so invsess must serialise canonically too;
* ``all headers`` - parse every header both libraries know (what invsess's endpoint does with
  each request it receives: ``parse_all()``), then read the same fields; no serialising.

Both builds of invsess are measured when both exist: the pure-Python modules, and the compiled
ones (``INVSESS_COMPILE=1 pip install -e .``; see docs/performance-parsing.md). Each build runs
in a process of its own (``INVSESS_PURE_PYTHON=1`` selects the pure-Python modules), where
invsess and sippy are timed in alternating rounds on the same corpus, so that a neighbour's load
hits both alike; each side keeps its fastest round. The target (issue 18) is invsess >= 3x sippy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository root

from benchmarks.callflow import CALL_FLOW
from invsess.sip import Via, parse_message

ROOT = Path(__file__).resolve().parent.parent
RFC4475 = ROOT / "tests" / "data" / "rfc4475"
EXTRA_VIA = Via("UDP", "proxy.example.com", 5060, (("branch", "z9hG4bKbench"),))
KINDS = ("as received", "modified", "all headers")


def invsess_work(kind: str) -> Callable[[bytes], Any]:
    """The work on one message, the invsess way."""
    modify = kind == "modified"
    everything = kind == "all headers"

    def work(data: bytes) -> Any:
        msg = parse_message(data)
        if everything:
            msg.parse_all()
        top = msg.top_via
        fields = (top.branch if top else None, msg.from_, msg.to, msg.call_id, msg.cseq)
        if everything:
            return fields
        if modify:
            msg.headers.prepend("Via", EXTRA_VIA)
        return fields, msg.serialize()

    return work


def sippy_work(kind: str) -> Callable[[bytes], Any]:
    """The same work, the sippy way."""
    from sippy.SipHeader import SipHeader
    from sippy.SipRequest import SipRequest
    from sippy.SipResponse import SipResponse

    modify = kind == "modified"
    everything = kind == "all headers"

    def work(data: bytes) -> Any:
        text = data.decode("utf-8", "surrogateescape")
        msg = (SipResponse if text.startswith("SIP/") else SipRequest)(buf=text)
        if everything:
            for header in msg.headers:
                header.getBody()
        fields = (
            msg.getHFBody("via").getBranch(),
            msg.getHFBody("from").getTag(),
            msg.getHFBody("to").getTag(),
            str(msg.getHFBody("call-id")),
            msg.getHFBody("cseq").getCSeq(),
        )
        if everything:
            return fields
        if modify:
            msg.insertHeaderBefore(msg.getHF("via"), SipHeader(f"Via: {EXTRA_VIA}"))
        return fields, msg.localStr().encode("utf-8", "surrogateescape")

    return work


def corpus() -> list[bytes]:
    """The call flow, plus every RFC 4475 message both parsers accept (all three ways)."""
    msgs = list(CALL_FLOW)
    for path in sorted(RFC4475.glob("*.dat")):
        data = path.read_bytes()
        try:
            for kind in KINDS:
                invsess_work(kind)(data)
                sippy_work(kind)(data)
        except Exception:  # a message either parser refuses is not part of the corpus
            continue
        msgs.append(data)
    return msgs


def best_times(
    contenders: dict[str, Callable[[bytes], Any]], msgs: list[bytes], seconds: float
) -> dict[str, float]:
    """Seconds per message of each contender: the fastest of many short alternating rounds."""
    best = dict.fromkeys(contenders, float("inf"))
    clock = time.perf_counter
    deadline = clock() + seconds
    while clock() < deadline:
        for name, work in contenders.items():
            start = clock()
            for _ in range(5):
                for data in msgs:
                    work(data)
            best[name] = min(best[name], (clock() - start) / (5 * len(msgs)))
    return best


def measure(seconds: float) -> dict[str, Any]:
    """This process's figures: which build it runs, and msg/s per kind for both parsers."""
    import invsess.sip

    msgs = corpus()
    out: dict[str, Any] = {"compiled": invsess.sip.COMPILED, "messages": len(msgs), "kinds": {}}
    for kind in KINDS:
        times = best_times(
            {"invsess": invsess_work(kind), "sippy": sippy_work(kind)}, msgs, seconds / len(KINDS)
        )
        out["kinds"][kind] = {name: 1 / t for name, t in times.items()}
    return out


def run_build(pure: bool, seconds: float) -> dict[str, Any]:
    """Measure one build in a process of its own."""
    env = dict(os.environ)
    env.pop("INVSESS_PURE_PYTHON", None)
    if pure:
        env["INVSESS_PURE_PYTHON"] = "1"
    cmd = [sys.executable, __file__, "--worker", "--seconds", str(seconds)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="time per build measured")
    parser.add_argument("--pure-only", action="store_true", help="skip the compiled build")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import sippy  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark compares with sippy: pip install sippy") from None
    if args.worker:
        print(json.dumps(measure(args.seconds)))
        return
    import invsess.sip

    builds = [("pure Python", run_build(True, args.seconds))]
    if invsess.sip.COMPILED and not args.pure_only:
        builds.append(("compiled", run_build(False, args.seconds)))
    first = builds[0][1]
    print(
        f"corpus: {first['messages']} messages ({len(CALL_FLOW)} call flow"
        f" + {first['messages'] - len(CALL_FLOW)} RFC 4475)"
    )
    for label, result in builds:
        for kind, rates in result["kinds"].items():
            ours, theirs = rates["invsess"], rates["sippy"]
            print(
                f"{label:12s} {kind:12s} invsess {ours:9.0f} msg/s   sippy {theirs:9.0f} msg/s"
                f"   ratio {ours / theirs:5.2f}x (target >= 3x)"
            )
    if not invsess.sip.COMPILED:
        print("compiled     not built here (INVSESS_COMPILE=1 pip install -e .; docs/performance-parsing.md)")


if __name__ == "__main__":
    main()
