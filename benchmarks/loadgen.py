"""A small SIP load generator (a UAC) for ``benchmarks/cps.py``: lighter than SIPp, in both senses.

Run: ``python -m benchmarks.loadgen sip:127.0.0.1:5060 --rate 100 --calls 1000 [--hold S]``.

It places full calls — INVITE with an SDP offer, 100/180/200, ACK, ``--hold`` seconds, BYE,
200 — at a steady rate, spread over ``--sockets`` UDP sockets (distinct source ports, so that
the kernel spreads them over the workers of ``invsess answer --workers N``), and prints what
SIPp's statistics would: calls succeeded and failed, its own retransmissions (RFC 3261 timers A
and E, T1 = 0.5 s), the response time INVITE -> 200, and the most calls up at once. A BYE from
the other side ends a call too (answered 200; counted as ``ended_by_peer``).

What it is not: SIPp. It knows this one flow (no scenarios, authentication or TCP), it is
Python, and it spends CPU of its own on the cores the answering side uses — printed as
``cpu_seconds`` so that a run where the generator was the bottleneck shows. SIPp (``cps.py
--sipp PATH``) is the better generator; this one is for machines without SIPp, and for CI.

It is a plain ``selectors`` loop with a timer heap (no asyncio): per call it parses four
responses with four regular expressions and builds three requests from templates.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import re
import secrets
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence

import attrs

T1 = 0.5
T2 = 4.0
#: RFC 3261 Timer B / F: a transaction with no final response by then has failed.
GIVE_UP = 64 * T1
_STATUS = re.compile(rb"SIP/2\.0 (\d{3}) ")
_CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
_CSEQ = re.compile(rb"\r\nCSeq[ \t]*:[ \t]*(\d+)[ \t]+([A-Za-z]+)", re.IGNORECASE)
_TO = re.compile(rb"\r\n(?:To|t)[ \t]*:([^\r\n]*)", re.IGNORECASE)
_TAG = re.compile(rb";[ \t]*tag=([^;>,\s]+)", re.IGNORECASE)
_CONTACT = re.compile(rb"\r\n(?:Contact|m)[ \t]*:[^\r\n<]*<([^>]+)>", re.IGNORECASE)
_RECORD_ROUTE = re.compile(rb"\r\nRecord-Route[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
_VIA = re.compile(rb"\r\n(?:Via|v)[ \t]*:[^\r\n]*", re.IGNORECASE)
_FROM = re.compile(rb"\r\n(?:From|f)[ \t]*:[^\r\n]*", re.IGNORECASE)
_SDP = (
    "v=0\r\no=loadgen 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

# Call states.
INVITING, PROCEEDING, UP, BYEING, DONE = range(5)


@attrs.define(slots=True)
class Call:
    """One call of the generator."""

    n: int
    sock: int
    call_id: bytes
    started: float
    state: int = INVITING
    request: bytes = b""  # the INVITE or BYE being retransmitted
    interval: float = T1
    due: float = 0.0  # the next retransmission, or the BYE, or the give-up time
    give_up: float = 0.0
    ack: bytes = b""


@attrs.define
class Result:
    """What a run did (``as_dict`` is the JSON line)."""

    target: str
    rate: float
    calls: int
    hold: float
    sockets: int
    started: int = 0
    succeeded: int = 0
    ended_by_peer: int = 0
    failures: Counter[str] = attrs.field(factory=Counter)
    retransmissions: int = 0
    repeated_2xx: int = 0
    response_ms: list[float] = attrs.field(factory=list)
    most_up: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Calls that did not end well."""
        return sum(self.failures.values())

    def as_dict(self) -> dict[str, object]:
        """The figures, JSON-ready."""
        times = sorted(self.response_ms)

        def pick(p: float) -> float | None:
            return round(times[max(0, math.ceil(p / 100 * len(times)) - 1)], 3) if times else None

        return {
            "target": self.target,
            "rate": self.rate,
            "calls": self.calls,
            "hold": self.hold,
            "sockets": self.sockets,
            "started": self.started,
            "succeeded": self.succeeded,
            "ended_by_peer": self.ended_by_peer,
            "failed": self.failed,
            "failures": dict(self.failures),
            "retransmissions": self.retransmissions,
            "repeated_2xx": self.repeated_2xx,
            "response_ms": {
                "avg": round(sum(times) / len(times), 3) if times else None,
                "p50": pick(50),
                "p95": pick(95),
                "max": round(times[-1], 3) if times else None,
            },
            "most_up": self.most_up,
            "elapsed": round(self.elapsed, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


class Generator:
    """Places ``calls`` calls at ``rate`` per second to ``target`` (host, port)."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        rate: float,
        calls: int,
        hold: float = 0.0,
        sockets: int = 16,
        local: str = "127.0.0.1",
        user: str = "service",
    ) -> None:
        if rate <= 0 or calls < 1 or sockets < 1:
            raise ValueError("rate > 0, calls >= 1, sockets >= 1")
        self.target = target
        self.rate = rate
        self.calls = calls
        self.hold = hold
        self.user = user
        self.local = local
        self._run = secrets.token_hex(4)
        self._socks: list[socket.socket] = []
        self._ports: list[int] = []
        self._selector = selectors.DefaultSelector()
        for i in range(sockets):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((local, 0))
            sock.setblocking(False)
            self._socks.append(sock)
            self._ports.append(sock.getsockname()[1])
            self._selector.register(sock, selectors.EVENT_READ, i)
        self._calls: dict[bytes, Call] = {}
        self._up = 0  # calls UP now
        self._heap: list[tuple[float, int, Call]] = []
        self._seq = itertools.count()
        self.result = Result(f"sip:{target[0]}:{target[1]}", rate, calls, hold, sockets)
        body = _SDP.format(host=local)
        self._invite = (
            f"INVITE sip:{user}@{target[0]}:{target[1]} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP {local}:{port};branch=z9hG4bK{run}i{n};rport\r\n"
            f"From: <sip:loadgen@{local}>;tag={{run}}{{n}}\r\n"
            f"To: <sip:{user}@{target[0]}:{target[1]}>\r\n"
            "Call-ID: {call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:loadgen@{local}:{port}>\r\n"
            "Max-Forwards: 70\r\n"
            "Subject: load\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )

    def close(self) -> None:
        """Close the sockets."""
        self._selector.close()
        for sock in self._socks:
            sock.close()

    # -- messages ----------------------------------------------------------------------------

    def _in_dialog(self, call: Call, method: str, cseq: int, branch: str, response: bytes) -> bytes:
        """ACK or BYE in the dialog the 2xx ``response`` made: to its Contact, through its
        Record-Route (reversed), with its To tag."""
        to = _TO.search(response)
        to_header = to.group(1).strip().decode() if to else ""
        contact = _CONTACT.search(response)
        uri = contact.group(1).decode() if contact else f"sip:{self.user}@{self.target[0]}:{self.target[1]}"
        routes = [
            r.decode().strip() for m in _RECORD_ROUTE.finditer(response) for r in m.group(1).split(b",")
        ]
        route = "".join(f"Route: {r}\r\n" for r in reversed(routes))
        port = self._ports[call.sock]
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.local}:{port};branch=z9hG4bK{self._run}{branch}{call.n};rport\r\n"
            f"{route}"
            f"From: <sip:loadgen@{self.local}>;tag={self._run}{call.n}\r\n"
            f"To:{to_header}\r\n"
            f"Call-ID: {call.call_id.decode()}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, linger: float = GIVE_UP + 1.0) -> Result:
        """Place every call, then wait (at most ``linger`` seconds after the last was placed)
        for the calls still under way."""
        result = self.result
        cpu0 = time.process_time()
        t0 = time.monotonic()
        last_start = t0 + (self.calls - 1) / self.rate
        stop_at = last_start + self.hold + linger
        while True:
            now = time.monotonic()
            due = min(self.calls, int((now - t0) * self.rate) + 1)
            burst = 0
            while result.started < due and burst < 200:
                self._start(result.started, now)
                burst += 1
            self._fire(now)
            if result.started >= self.calls and not self._calls:
                break
            if now >= stop_at:
                for call in self._calls.values():
                    result.failures["still under way at the end"] += 1
                    call.state = DONE
                self._calls.clear()
                break
            next_start = t0 + result.started / self.rate if result.started < self.calls else math.inf
            next_timer = self._heap[0][0] if self._heap else math.inf
            wait = max(0.0, min(next_start, next_timer, stop_at) - time.monotonic())
            for key, _ in self._selector.select(min(wait, 0.05)):
                self._read(key.data)
        result.elapsed = time.monotonic() - t0
        result.cpu_seconds = time.process_time() - cpu0
        return result

    def _start(self, n: int, now: float) -> None:
        sock = n % len(self._socks)
        port = self._ports[sock]
        call_id = f"{self._run}-{n}@{self.local}".encode()
        data = self._invite.format(
            local=self.local, port=port, run=self._run, n=n, call_id=call_id.decode()
        ).encode()
        call = Call(n, sock, call_id, now, request=data)
        self._calls[call_id] = call
        self.result.started += 1
        self._send(call, data)
        call.give_up = now + GIVE_UP
        self._schedule(call, now + T1)

    def _send(self, call: Call, data: bytes) -> None:
        try:
            self._socks[call.sock].sendto(data, self.target)
        except (BlockingIOError, InterruptedError):
            pass  # lost, as UDP may lose it: the timers resend it
        except OSError:  # ICMP port unreachable reported on the socket: resend later
            pass

    def _schedule(self, call: Call, when: float) -> None:
        call.due = when
        heapq.heappush(self._heap, (when, next(self._seq), call))

    def _fire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, call = heapq.heappop(heap)
            if call.state == DONE or call.due != when:
                continue  # stale
            if call.state == UP:  # the hold is over: BYE
                self._up -= 1
                call.state = BYEING
                call.interval = T1
                call.give_up = now + GIVE_UP
                self._send(call, call.request)
                self._schedule(call, now + T1)
            elif now >= call.give_up:
                self._end(call, "timeout" if call.state != BYEING else "BYE timeout")
            elif call.state in (INVITING, BYEING):
                self.result.retransmissions += 1
                self._send(call, call.request)
                call.interval = min(call.interval * 2, T2) if call.state == BYEING else call.interval * 2
                self._schedule(call, min(now + call.interval, call.give_up))
            else:  # PROCEEDING: only the give-up time is armed
                self._schedule(call, call.give_up)

    def _end(self, call: Call, failure: str | None) -> None:
        if call.state == UP:
            self._up -= 1
        call.state = DONE
        self._calls.pop(call.call_id, None)
        if failure is None:
            self.result.succeeded += 1
        else:
            self.result.failures[failure] += 1

    def _read(self, index: int) -> None:
        sock = self._socks[index]
        for _ in range(256):
            try:
                data, source = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if data.startswith(b"SIP/2.0 "):
                self._response(data)
            elif data[:1].isalpha():
                self._request(data, sock, source)

    def _response(self, data: bytes) -> None:
        status = _STATUS.match(data)
        call_id = _CALL_ID.search(data)
        cseq = _CSEQ.search(data)
        if status is None or call_id is None or cseq is None:
            return
        call = self._calls.get(call_id.group(1).strip())
        if call is None:
            return
        code = int(status.group(1))
        method = cseq.group(2).upper()
        now = time.monotonic()
        if method == b"INVITE":
            if call.state == INVITING and code < 200:
                call.state = PROCEEDING  # Timer A stops; Timer B still runs
                self._schedule(call, call.give_up)
            elif code >= 300 and call.state in (INVITING, PROCEEDING):
                self._end(call, str(code))  # (the answering side absorbs our lack of ACK: rare)
            elif 200 <= code < 300:
                if call.state in (INVITING, PROCEEDING):
                    self.result.response_ms.append((now - call.started) * 1000.0)
                    call.ack = self._in_dialog(call, "ACK", 1, "a", data)
                    call.request = self._in_dialog(call, "BYE", 2, "b", data)
                    call.state = UP
                    self._up += 1
                    self.result.most_up = max(self.result.most_up, self._up)
                    self._send(call, call.ack)
                    self._schedule(call, now + self.hold)
                elif call.ack:  # a 2xx retransmitted: our ACK was lost or late
                    self.result.repeated_2xx += 1
                    self._send(call, call.ack)
        elif method == b"BYE" and call.state == BYEING and code >= 200:
            self._end(call, None if code < 300 else f"BYE {code}")

    def _request(self, data: bytes, sock: socket.socket, source: tuple[str, int]) -> None:
        """A BYE from the other side ends the call (200); anything else gets 200 too (OPTIONS)
        or nothing (ACK)."""
        method = data.split(b" ", 1)[0]
        if method == b"ACK":
            return
        head = data.split(b"\r\n\r\n", 1)[0]
        lines = [b"SIP/2.0 200 OK"]
        lines += [m.group(0).strip() for m in _VIA.finditer(head)]
        for pattern in (_FROM, _TO, _CALL_ID, _CSEQ_LINE):
            found = pattern.search(head)
            if found:
                lines.append(found.group(0).strip())
        lines.append(b"Content-Length: 0")
        try:
            sock.sendto(b"\r\n".join(lines) + b"\r\n\r\n", source)
        except OSError:
            return
        call_id = _CALL_ID.search(head)
        call = self._calls.get(call_id.group(1).strip()) if call_id else None
        if method == b"BYE" and call is not None and call.state in (UP, BYEING):
            self.result.ended_by_peer += 1
            self._end(call, None)


_CSEQ_LINE = re.compile(rb"\r\nCSeq[ \t]*:[^\r\n]*", re.IGNORECASE)


def parse_target(text: str) -> tuple[str, int]:
    """``sip:HOST:PORT`` (or ``HOST:PORT``) as an address."""
    rest = text.split(":", 1)[1] if text.startswith("sip:") else text
    rest = rest.split(";", 1)[0].split("@")[-1]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port or 5060)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; prints the figures (``--json``: one JSON line)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", help="sip:HOST:PORT of the answering side")
    parser.add_argument("--rate", type=float, default=10.0, help="calls started per second")
    parser.add_argument("--calls", type=int, default=100, help="calls to place")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds each call stays up before its BYE")
    parser.add_argument(
        "--sockets", type=int, default=16, help="UDP sockets (source ports) the calls go from"
    )
    parser.add_argument("--local", default="127.0.0.1", help="the address to send from")
    parser.add_argument(
        "--linger", type=float, default=GIVE_UP + 1.0, help="longest wait after the last call"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    generator = Generator(
        parse_target(args.target),
        rate=args.rate,
        calls=args.calls,
        hold=args.hold,
        sockets=args.sockets,
        local=args.local,
    )
    try:
        result = generator.run(linger=args.linger)
    finally:
        generator.close()
    figures = result.as_dict()
    if args.json:
        print(json.dumps(figures), flush=True)
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0 if result.failed == 0 and result.succeeded == result.calls else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Generator", "Result", "main", "parse_target"]
