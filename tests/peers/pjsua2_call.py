"""A PJSIP UAC (pjsua2): place one call and print ``FINAL <status>``. Run as a subprocess.

Usage: python -m tests.peers.pjsua2_call SIP_URI udp|tcp

PEERS.md's traps are followed: one polling thread (threadCnt=0, mainThreadOnly), the null
sound device, sndAutoCloseTime=-1, and os._exit at the end, because Python collecting Call
objects after libDestroy() trips an assertion inside pjsua.
"""

from __future__ import annotations

import os
import sys
import time

import pjsua2 as pj


class Call(pj.Call):  # type: ignore[misc]
    """Remembers the final status."""

    def __init__(self, account: pj.Account) -> None:
        super().__init__(account)
        self.final: int | None = None

    def onCallState(self, prm: object) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.final = info.lastStatusCode


def main(target: str, transport: str) -> None:
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    ua = cfg.uaConfig
    ua.threadCnt = 0
    ua.mainThreadOnly = True
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
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_TCP if transport == "tcp" else pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:pjsip@127.0.0.1"
    account = pj.Account()
    account.create(acfg)
    call = Call(account)
    call.makeCall(target, pj.CallOpParam(True))
    deadline = time.monotonic() + 20
    while call.final is None and time.monotonic() < deadline:
        ep.libHandleEvents(10)
    for _ in range(30):  # let the ACK go out
        ep.libHandleEvents(10)
    print(f"FINAL {call.final}", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
