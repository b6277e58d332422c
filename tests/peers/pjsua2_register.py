"""PJSIP (pjsua2) registering with a registrar, in a subprocess; reported on stdout.

  python -m tests.peers.pjsua2_register REGISTRAR_URI USER PASSWORD [--expires S] [--stay S]
      [--proxy URI] [--answer]

Registers ``sip:USER@<registrar host>`` with digest credentials for any realm, prints
``REG <code> <expires>`` on every registration state change, stays ``--stay`` seconds (with
``--answer`` it answers an incoming call with 200 and prints ``STATE <name> <code>``, ``HELD``
on a remote hold, and waits for the call to end), then unregisters and prints ``UNREG <code>``.
PEERS.md's traps are followed (one polling thread, null sound device, os._exit at the end).
"""

from __future__ import annotations

import argparse
import os
import time

import pjsua2 as pj

from tests.peers.pjsua2_call import KEEP, Account, pump, start


class RegAccount(Account):
    """An account that prints its registration states."""

    def __init__(self, answer: int | None) -> None:
        super().__init__(answer)
        self.last: tuple[int, int] | None = None

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        self.last = (prm.code, info.regExpiresSec)
        print(f"REG {prm.code} {info.regExpiresSec if info.regIsActive else 0}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("registrar")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--expires", type=int, default=60)
    parser.add_argument("--stay", type=float, default=1.0)
    parser.add_argument("--proxy", default=None)
    parser.add_argument("--answer", action="store_true")
    parser.add_argument("--transport", default="udp")
    opts = parser.parse_args()
    ep, port = start(opts.transport)
    print(f"PORT {port}", flush=True)
    host = opts.registrar.split(":", 1)[1].split(":")[0].split(";")[0]
    cfg = pj.AccountConfig()
    cfg.idUri = f"sip:{opts.user}@{host}"
    reg = cfg.regConfig
    reg.registrarUri = opts.registrar
    reg.timeoutSec = opts.expires
    reg.retryIntervalSec = 0  # a refused registration is reported, not retried
    cfg.regConfig = reg
    cred = pj.AuthCredInfo("digest", "*", opts.user, 0, opts.password)
    sip = cfg.sipConfig
    sip.authCreds.append(cred)
    if opts.proxy:
        sip.proxies.append(opts.proxy)
    cfg.sipConfig = sip
    account = RegAccount(200 if opts.answer else None)
    account.create(cfg)
    KEEP.append(account)
    pump(ep, time.monotonic() + 10, lambda: account.last is not None)
    if opts.answer:
        pump(
            ep, time.monotonic() + opts.stay, lambda: any(c.final is not None for c in account.calls), account
        )
    else:
        pump(ep, time.monotonic() + opts.stay)
    before = account.last
    account.setRegistration(False)
    pump(ep, time.monotonic() + 5, lambda: account.last is not before)
    code = account.last[0] if account.last is not None and account.last is not before else None
    print(f"UNREG {code}", flush=True)
    pump(ep, time.monotonic() + 0.3)
    os._exit(0)


if __name__ == "__main__":
    main()
