"""Parser throughput: parse + read the usual headers + serialise, invsess vs sippy, in one run.

Run: ``pip install sippy`` then ``python benchmarks/parse.py [--seconds S]``.

Corpus: a real call flow (INVITE/100/180/200/ACK/BYE/200 with SDP) and the RFC 4475 messages
that both parsers accept. Work per message, for both: parse the bytes, read the top Via branch,
From tag, To tag, Call-ID and CSeq, and serialise. Two figures each:

* ``as received`` - serialise the message unmodified (invsess returns the received bytes,
  which is its design: "serialised once, retransmitted from bytes");
* ``modified`` - add a Via on top first, so invsess must serialise canonically too.

The target (issue 3) is invsess >= 3x sippy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repository root

from benchmarks.callflow import CALL_FLOW
from invsess.sip import Via, parse_message

RFC4475 = Path(__file__).resolve().parent.parent / "tests" / "data" / "rfc4475"
EXTRA_VIA = Via("UDP", "proxy.example.com", 5060, (("branch", "z9hG4bKbench"),))


def invsess_work(modify: bool) -> Callable[[bytes], Any]:
    def work(data: bytes) -> Any:
        msg = parse_message(data)
        top = msg.top_via
        fields = (top.branch if top else None, msg.from_, msg.to, msg.call_id, msg.cseq)
        if modify:
            msg.headers.prepend("Via", EXTRA_VIA)
        return fields, msg.serialize()

    return work


def sippy_work(modify: bool) -> Callable[[bytes], Any]:
    from sippy.SipHeader import SipHeader
    from sippy.SipRequest import SipRequest
    from sippy.SipResponse import SipResponse

    def work(data: bytes) -> Any:
        text = data.decode("utf-8", "surrogateescape")
        msg = (SipResponse if text.startswith("SIP/") else SipRequest)(buf=text)
        fields = (
            msg.getHFBody("via").getBranch(),
            msg.getHFBody("from").getTag(),
            msg.getHFBody("to").getTag(),
            str(msg.getHFBody("call-id")),
            msg.getHFBody("cseq").getCSeq(),
        )
        if modify:
            msg.insertHeaderBefore(msg.getHF("via"), SipHeader(f"Via: {EXTRA_VIA}"))
        return fields, msg.localStr().encode("utf-8", "surrogateescape")

    return work


def corpus() -> list[bytes]:
    """The call flow, plus every RFC 4475 message both parsers accept."""
    msgs = list(CALL_FLOW)
    check_sippy = sippy_work(False)
    for path in sorted(RFC4475.glob("*.dat")):
        data = path.read_bytes()
        try:
            invsess_work(False)(data)
            check_sippy(data)
        except Exception:
            continue
        msgs.append(data)
    return msgs


def rate(work: Callable[[bytes], Any], msgs: list[bytes], seconds: float) -> float:
    """Messages per second, best of three runs of ``seconds / 3``."""
    best = 0.0
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while time.perf_counter() < deadline:
            for data in msgs:
                work(data)
            n += len(msgs)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement")
    args = parser.parse_args()
    try:
        import sippy  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark compares with sippy: pip install sippy") from None
    msgs = corpus()
    print(
        f"corpus: {len(msgs)} messages ({len(CALL_FLOW)} call flow + {len(msgs) - len(CALL_FLOW)} RFC 4475)"
    )
    for label, modify in (("as received", False), ("modified", True)):
        ours = rate(invsess_work(modify), msgs, args.seconds)
        theirs = rate(sippy_work(modify), msgs, args.seconds)
        print(f"{label:12s} invsess {ours:9.0f} msg/s   sippy {theirs:9.0f} msg/s", end="   ")
        print(f"ratio {ours / theirs:5.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
