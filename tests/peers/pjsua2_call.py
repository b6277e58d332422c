"""PJSIP (pjsua2) as a peer, in a subprocess: one call as UAC or UAS, reported on stdout.

  python -m tests.peers.pjsua2_call uac SIP_URI udp|tcp [--hold] [--dtmf-info] [--hangup-after S]
  python -m tests.peers.pjsua2_call uas udp|tcp [--answer 200|--ring-only] [--ring 183] [--ring-for S]

Both take ``--timer SE,MIN_SE`` (session timers always on, PJSUA_SIP_TIMER_ALWAYS) and
``--100rel`` (PJSUA_100REL_MANDATORY: reliable 1xx, with our SDP answer in them).

UAS mode prints ``PORT <n>`` once listening. Both print ``STATE <name> <code>`` on every state
change, ``HELD`` when a hold re-INVITE went through, and ``FINAL <code>`` at the end.
``--dtmf-info`` sends the digit 1 by SIP INFO (application/dtmf-relay) once the call is up.

PEERS.md's traps are followed: one polling thread (threadCnt=0, mainThreadOnly), the null sound
device, sndAutoCloseTime=-1, and os._exit at the end, because Python collecting Call objects
after libDestroy() trips an assertion inside pjsua.
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
KEEP: list[object] = []


class Call(pj.Call):  # type: ignore[misc]
    """Prints its states; remembers the final status."""

    def __init__(self, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.final: int | None = None
        self.confirmed_at: float | None = None

    def onCallState(self, prm: object) -> None:
        info = self.getInfo()
        print(f"STATE {STATES.get(info.state, info.state)} {info.lastStatusCode}", flush=True)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.final = info.lastStatusCode

    def onCallMediaState(self, prm: object) -> None:
        info = self.getInfo()
        for media in info.media:
            if media.status == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD:
                print("HELD", flush=True)


class Account(pj.Account):  # type: ignore[misc]
    """Answers incoming calls as told."""

    def __init__(self, answer: int | None, ring: int = 180, ring_for: float = 0.0) -> None:
        super().__init__()
        self.answer = answer
        self.ring = ring
        self.ring_for = ring_for
        self.calls: list[Call] = []
        self.due: list[tuple[float, Call, int]] = []  # answers to send later (from the pump)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Call(self, prm.callId)
        self.calls.append(call)
        KEEP.append(call)
        op = pj.CallOpParam()
        op.statusCode = self.ring
        call.answer(op)
        if self.answer is not None:
            self.due.append((time.monotonic() + self.ring_for, call, self.answer))

    def answer_due(self) -> None:
        """Send the answers whose time has come (never from inside a callback)."""
        now = time.monotonic()
        for item in [d for d in self.due if d[0] <= now]:
            self.due.remove(item)
            op = pj.CallOpParam()
            op.statusCode = item[2]
            item[1].answer(op)


def start(transport: str) -> tuple[pj.Endpoint, int]:
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
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_TCP if transport == "tcp" else pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    return ep, ep.transportGetInfo(tid).localName.rsplit(":", 1)[1]


def pump(ep: pj.Endpoint, until: float, done: object = None, account: Account | None = None) -> None:
    while time.monotonic() < until and not (callable(done) and done()):
        ep.libHandleEvents(10)
        if account is not None:
            account.answer_due()


def account_config(opts: argparse.Namespace) -> pj.AccountConfig:
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:pjsip@127.0.0.1"
    if opts.timer:
        se, min_se = (int(v) for v in opts.timer.split(","))
        acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_ALWAYS
        acfg.callConfig.timerSessExpiresSec = se
        acfg.callConfig.timerMinSESec = min_se
    if opts.rel100:
        acfg.callConfig.prackUse = pj.PJSUA_100REL_MANDATORY
    return acfg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["uac", "uas"])
    parser.add_argument("args", nargs="+")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--dtmf-info", action="store_true")
    parser.add_argument("--hangup-after", type=float, default=0.5)
    parser.add_argument("--answer", type=int, default=200)
    parser.add_argument("--ring-only", action="store_true")
    parser.add_argument("--ring", type=int, default=180)
    parser.add_argument("--ring-for", type=float, default=0.0)
    parser.add_argument("--timer", default=None)
    parser.add_argument("--100rel", dest="rel100", action="store_true")
    parser.add_argument("--wait", type=float, default=25.0, help="UAS: how long to wait for the call to end")
    opts = parser.parse_args()
    if opts.mode == "uac":
        target, transport = opts.args
        ep, _ = start(transport)
        account = Account(None)
        account.create(account_config(opts))
        call = Call(account)
        KEEP.extend([account, call])
        call.makeCall(target, pj.CallOpParam(True))
        pump(ep, time.monotonic() + 20, lambda: call.confirmed_at is not None or call.final is not None)
        if call.final is None and opts.hold:
            call.setHold(pj.CallOpParam(True))
            pump(ep, time.monotonic() + 2)
        if call.final is None and opts.dtmf_info:
            dtmf = pj.CallSendDtmfParam()
            dtmf.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            dtmf.digits = "1"
            call.sendDtmf(dtmf)
            print("DTMF-INFO sent", flush=True)
        if call.final is None:
            pump(ep, time.monotonic() + opts.hangup_after, lambda: call.final is not None)
        if call.final is None:
            call.hangup(pj.CallOpParam(True))
        pump(ep, time.monotonic() + 10, lambda: call.final is not None)
        pump(ep, time.monotonic() + 0.3)
        print(f"FINAL {call.final}", flush=True)
    else:
        (transport,) = opts.args
        ep, port = start(transport)
        account = Account(None if opts.ring_only else opts.answer, opts.ring, opts.ring_for)
        account.create(account_config(opts))
        KEEP.append(account)
        print(f"PORT {port}", flush=True)
        pump(
            ep, time.monotonic() + opts.wait, lambda: any(c.final is not None for c in account.calls), account
        )
        pump(ep, time.monotonic() + 0.3)
        finals = [c.final for c in account.calls]
        print(f"FINAL {finals[0] if finals else None}", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
