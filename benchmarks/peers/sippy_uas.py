"""sippy as an auto-answering UAS, for ``benchmarks/cps.py`` (sippy ships B2BUAs, no UAS).

Run: ``python -m benchmarks.peers.sippy_uas --port 5060 [--address 127.0.0.1]``.

Every INVITE is answered 200 with a fixed SDP answer (PCMU), as ``invsess answer`` and SIPp's
UAS do; every other out-of-dialog request gets 200 (OPTIONS: the readiness probe). Written the
way sippy's own ``b2bua_simple`` is: a UA per call on sippy's transaction manager and event loop.
It prints ``PORT <n>`` once listening, and exits on SIGTERM or SIGINT. sippy logs every
message at INFO level; this runs it at WARN (``SIPLOG_LVL``), as ``invsess answer`` runs at
``warning``, so that neither pays for a log the other does not write.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from sippy.CCEvents import CCEventConnect, CCEventTry
from sippy.Core.EventDispatcher import ED2
from sippy.MsgBody import MsgBody
from sippy.SipConf import SipConf
from sippy.SipLogger import SipLogger
from sippy.SipTransactionManager import SipTransactionManager
from sippy.UA import UA

ANSWER = (
    "v=0\r\no=sippy 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Answerer:
    """Makes a UA for each INVITE and answers it at once."""

    def __init__(self, config: dict[str, Any], host: str) -> None:
        self.config = config
        self.body = ANSWER.format(host=host)

    def request(self, req: Any, sip_t: Any) -> Any:
        if req.getHFBody("to").getTag() is not None:
            return (req.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None)
        if req.getMethod() == "INVITE":
            ua = UA(self.config, self.event)
            return ua.recvRequest(req, sip_t)
        return (req.genResponse(200, "OK"), None, None)

    def event(self, event: Any, ua: Any) -> None:
        if isinstance(event, CCEventTry):
            ua.recvEvent(CCEventConnect((200, "OK", MsgBody(self.body))))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("SIPLOG_LVL", "WARN")
    SipConf.my_uaname = "sippy UAS (benchmarks)"
    config: dict[str, Any] = {
        "_sip_address": args.address,
        "_sip_port": args.port,
        "_sip_logger": SipLogger("sippy_uas"),
    }
    answerer = Answerer(config, args.address)
    config["_sip_tm"] = SipTransactionManager(config, answerer.request)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ED2.breakLoop())
    print(f"PORT {args.port}", flush=True)
    ED2.loop()
    sys.exit(0)


if __name__ == "__main__":
    main()
