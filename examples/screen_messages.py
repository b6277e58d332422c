"""Screen raw SIP datagrams the way an endpoint does, and show what each one would get back.

Run: ``python examples/screen_messages.py [FILE ...]`` (defaults to a few built-in messages).
"""

from __future__ import annotations

import sys
from pathlib import Path

from invsess.memory import PoolFactory
from invsess.sip import parse_message, screen_datagram

SAMPLES = {
    "good OPTIONS": (
        b"OPTIONS sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n"
        b"From: <sip:alice@a.example.com>;tag=1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: x@a\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ),
    "CSeq mismatch": (
        b"OPTIONS sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK2\r\n"
        b"From: <sip:alice@a.example.com>;tag=1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: y@a\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ),
    "unknown extension": (
        b"OPTIONS sip:bob@b.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK3\r\n"
        b"From: <sip:alice@a.example.com>;tag=1\r\nTo: <sip:bob@b.example.com>\r\nCall-ID: z@a\r\n"
        b"CSeq: 1 OPTIONS\r\nRequire: teleportation\r\nContent-Length: 0\r\n\r\n"
    ),
}


def main() -> None:
    """Screen each message and print the verdict and the first line of any answer."""
    factory = PoolFactory()
    inputs = {p: Path(p).read_bytes() for p in sys.argv[1:]} or SAMPLES
    for name, data in inputs.items():
        verdict = screen_datagram(data, factory, supported=["timer", "100rel"])
        answer = ""
        if verdict.reply is not None:
            answer = parse_message(verdict.reply).start_line()
        print(f"{name:20s} {verdict.outcome:5s} {answer}")
    print(factory.leak_report().format())


if __name__ == "__main__":
    main()
