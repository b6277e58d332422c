"""PJSIP (pjsua2-python) as an auto-answering UAS, for ``benchmarks/cps.py``.

Run: ``python -m benchmarks.peers.pjsua2_uas --port 5060``.

Every incoming call is answered 200 at once (pjsua2 answers with its own SDP). PEERS.md's traps
are followed: one polling thread (``threadCnt=0``, ``mainThreadOnly``), the null sound device,
``sndAutoCloseTime=-1``, every Call object kept until the process ends, ``os._exit`` at the
end. The wheel holds at most 4 calls at once (PEERS.md): a higher concurrency gets 486.
Prints ``PORT <n>`` once listening; SIGTERM or SIGINT ends it.
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

import pjsua2 as pj

KEEP: list[Any] = []


class Account(pj.Account):  # type: ignore[misc]
    """Answers every incoming call 200."""

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802 - pjsua2's name
        call = pj.Call(self, prm.callId)
        KEEP.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-calls", type=int, default=32)
    args = parser.parse_args()
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    ua = cfg.uaConfig
    ua.threadCnt = 0
    ua.mainThreadOnly = True
    ua.maxCalls = args.max_calls
    cfg.uaConfig = ua
    med = cfg.medConfig
    med.sndAutoCloseTime = -1
    cfg.medConfig = med
    logs = cfg.logConfig
    logs.level = 0
    logs.consoleLevel = 0
    cfg.logConfig = logs
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = args.port
    tcfg.boundAddress = args.address
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    account = Account()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:pjsua2@{args.address}"
    account.create(acfg)
    KEEP.append(account)
    running = [True]

    def stop(*_: object) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {args.port}", flush=True)
    while running[0]:
        ep.libHandleEvents(10)
    os._exit(0)


if __name__ == "__main__":
    main()
