"""A softphone on the public API: it places a call and takes one, and shows what a phone needs —
the caller's identity before answering, ringing, an answer with its own SDP, the event stream,
pjsua2-style callbacks, hold and resume (its own, and the far end's through an offer handler),
DTMF by INFO, and a hang-up with a reason.

Run: ``python examples/softphone.py`` (loopback UDP; the far end is a second user agent in the
same process, standing in for a PBX or another phone).
"""

from __future__ import annotations

import asyncio

from invsess.aio import (
    Call,
    CallEnded,
    OfferArrived,
    ProgressReceived,
    Reject,
    SendGuard,
    StateChanged,
    UserAgent,
)
from invsess.inv import InviteState
from invsess.logs import configure
from invsess.sdp import SessionDescription, parse_sdp


def media(user: str, port: int, direction: str = "sendrecv") -> SessionDescription:
    return parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )


async def accept_holds(call: Call, offer: OfferArrived) -> SessionDescription | Reject | None:
    """The far end's re-INVITEs: accept (None: answered from our own SDP), refuse video."""
    if offer.sdp is not None and any(m.media == "video" for m in offer.sdp.media):
        return Reject(488, "No Video Here")
    return None


async def main() -> None:
    configure("warning")
    guard = SendGuard.loopback_only()
    phone = await UserAgent.create(["udp:127.0.0.1:0"], sdp=media("phone", 40000), user="phone", guard=guard)
    far = await UserAgent.create(["udp:127.0.0.1:0"], sdp=media("far", 40002), user="far", guard=guard)
    phone.on_offer = accept_holds

    # -- Registration -------------------------------------------------------------------------
    # A softphone at a provider registers here, before it can be called by name:
    #     registration = await phone.register("sip:registrar.example.com", "alice", "secret")
    # (digest authentication, refresh before expiry, Expires: 0 at ua.close(); the password also
    # answers the 401/407 of calls through the same proxy). examples/softphone_register.py does
    # it against Kamailio (register_softphone()); this example calls and is called by address.
    # -----------------------------------------------------------------------------------------

    far_host, far_port = far.endpoint.listeners["udp"]
    phone_host, phone_port = phone.endpoint.listeners["udp"]

    # 1. An outgoing call, followed through its events; our SDP for this call only.
    call = await phone.call(f"sip:far@{far_host}:{far_port}", sdp=media("phone", 40010),
                            headers=[("X-Account", "demo")], display_name="My Phone")  # fmt: skip
    callee = await far.incoming(timeout=5)
    print("far end: call from", callee.request.from_ if callee.request else "?")
    await callee.ring(183, sdp=media("far", 40012))  # early media (ringback from the far end)
    await callee.answer()
    async for event in call.events():
        if isinstance(event, StateChanged):
            print("phone: call", event.new.name)
            if event.new is InviteState.CONFIRMED:
                break
        elif isinstance(event, ProgressReceived):
            print("phone: ringing, with early media")
    await call.hold()
    print("phone: on hold:", call.media.local.media[0].direction if call.media else "?")
    await call.resume()
    reply = await call.send_dtmf("1")
    print("phone: DTMF 1 sent by INFO:", reply.status_code)
    await call.hangup(reason="user hung up")
    print("phone: ended, cause", call.cause)
    await call.close()
    await callee.close()

    # 2. An incoming call: look at it before answering; pjsua2-style callbacks on the way.
    back = await far.call(f"sip:phone@{phone_host}:{phone_port}", display_name="Far End")
    incoming = await phone.incoming(timeout=5)
    who = incoming.request.from_ if incoming.request else None
    print("phone: incoming call from", who.display_name if who else "?", "offering",
          incoming.remote_offer.media[0].formats if incoming.remote_offer else "nothing")  # fmt: skip
    incoming.on_state = lambda c, e: print(
        "phone: (callback)", e.new.name if isinstance(e, StateChanged) else "ended"
    )
    incoming.on_dtmf = lambda c, e: print("phone: (callback) DTMF", e.digit)
    await incoming.ring()
    await incoming.answer(sdp=media("phone", 40020))  # this call's answer: our SDP, chosen now
    await back.wait_for(InviteState.CONFIRMED)
    await back.hold()  # the far end holds: our offer handler accepts it
    await back.send_dtmf("9")
    await back.resume()
    await back.hangup()
    async for event in incoming.events():
        if isinstance(event, CallEnded):
            print("phone: the far end hung up, cause", event.cause)
    await incoming.close()
    await back.close()

    for name, ua in (("phone", phone), ("far end", far)):
        print(f"{name}:", (await ua.close()).format())


if __name__ == "__main__":
    asyncio.run(main())
