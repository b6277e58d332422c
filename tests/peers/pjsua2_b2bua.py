"""PJSIP (pjsua2) at either end of a B2BUA, in a subprocess: a scripted call, reported on stdout.

  python -m tests.peers.pjsua2_b2bua uac SIP_URI [--hold] [--dtmf DIGITS] [--hangup-after S | --wait-bye]
  python -m tests.peers.pjsua2_b2bua uas [--hangup-after S]

UAS mode prints ``PORT <n>`` once listening. Both print ``STATE <name> <code>`` on every state
change, ``MEDIA <status>`` on media changes (ACTIVE, LOCAL_HOLD, REMOTE_HOLD, NONE),
``DTMF <digit> <method>`` for each digit received, and ``FINAL <code>`` at the end. The UAC
holds (re-INVITE a=sendonly) and resumes with ``--hold``, sends ``--dtmf`` digits by SIP INFO,
then hangs up after ``--hangup-after`` seconds, or waits for the other side's BYE.

The traps of PEERS.md are followed (one polling thread, the null sound device,
sndAutoCloseTime=-1, os._exit at the end).
"""

from __future__ import annotations

import argparse
import os
import time

import pjsua2 as pj

STATES = {
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA = {
    pj.PJSUA_CALL_MEDIA_NONE: "NONE",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
    pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
}
METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}
KEEP: list[object] = []


def say(line: str) -> None:
    print(line, flush=True)


class Call(pj.Call):  # type: ignore[misc]
    """Prints what happens to it."""

    def __init__(self, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.final: int | None = None
        self.confirmed = False
        self.media: list[str] = []

    def onCallState(self, prm: object) -> None:
        info = self.getInfo()
        say(f"STATE {STATES.get(info.state, info.state)} {info.lastStatusCode}")
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.final = info.lastStatusCode

    def onCallMediaState(self, prm: object) -> None:
        info = self.getInfo()  # kept: its media vector dies with it (SWIG)
        for media in info.media:
            status = MEDIA.get(media.status, str(media.status))
            self.media.append(status)
            say(f"MEDIA {status}")

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        say(f"DTMF {prm.digit} {METHODS.get(prm.method, prm.method)}")


class Account(pj.Account):  # type: ignore[misc]
    """Answers incoming calls (UAS mode) with 180 then 200."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.answer_at: list[tuple[float, Call]] = []

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Call(self, prm.callId)
        self.calls.append(call)
        KEEP.append(call)
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        self.answer_at.append((time.monotonic() + 0.2, call))

    def answer_due(self) -> None:
        now = time.monotonic()
        for item in [a for a in self.answer_at if a[0] <= now]:
            self.answer_at.remove(item)
            op = pj.CallOpParam()
            op.statusCode = 200
            item[1].answer(op)


def start() -> tuple[pj.Endpoint, str]:
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
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    return ep, ep.transportGetInfo(tid).localName.rsplit(":", 1)[1]


def pump(ep: pj.Endpoint, seconds: float, done: object = None, account: Account | None = None) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until and not (callable(done) and done()):
        ep.libHandleEvents(10)
        if account is not None:
            account.answer_due()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["uac", "uas"])
    parser.add_argument("target", nargs="?")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--dtmf", default="")
    parser.add_argument("--hangup-after", type=float, default=None)
    parser.add_argument("--wait", type=float, default=30.0)
    opts = parser.parse_args()
    ep, port = start()
    account = Account()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:pjsip-{opts.mode}@127.0.0.1"
    account.create(acfg)
    KEEP.append(account)
    if opts.mode == "uas":
        say(f"PORT {port}")
        pump(ep, opts.wait, lambda: any(c.confirmed for c in account.calls), account)
        call = account.calls[0] if account.calls else None
        if call is not None and opts.hangup_after is not None:
            pump(ep, opts.hangup_after)
            if call.final is None:
                call.hangup(pj.CallOpParam(True))
        pump(ep, opts.wait, lambda: call is None or call.final is not None, account)
    else:
        call = Call(account)
        KEEP.append(call)
        call.makeCall(opts.target, pj.CallOpParam(True))
        pump(ep, 20, lambda: call.confirmed or call.final is not None)
        if call.final is None and opts.hold:
            call.setHold(pj.CallOpParam(True))
            pump(ep, 2, lambda: "LOCAL_HOLD" in call.media)
            op = pj.CallOpParam(True)
            op.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(op)
            pump(ep, 2, lambda: call.media[-1:] == ["ACTIVE"] and call.media.count("ACTIVE") > 1)
        for digit in opts.dtmf:
            if call.final is None:
                prm = pj.CallSendDtmfParam()
                prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
                prm.digits = digit
                call.sendDtmf(prm)
                pump(ep, 0.3)
        if call.final is None and opts.hangup_after is not None:
            pump(ep, opts.hangup_after)
            if call.final is None:
                call.hangup(pj.CallOpParam(True))
        pump(ep, opts.wait, lambda: call.final is not None)
    pump(ep, 0.3)
    say(f"FINAL {call.final if call is not None else None}")
    os._exit(0)  # never libDestroy: Python collecting Call objects after it asserts in pjsua


if __name__ == "__main__":
    main()
