"""Softphones that register: digest authentication, a binding kept fresh, calls by name.

Two softphones, Alice and Bob, register with a registrar and proxy (a real Kamailio when it is
installed: ``examples/kamailio/registrar-proxy.cfg`` on free loopback ports; otherwise an
invsess registrar in this process), Alice calls Bob *by name* through the proxy, puts him on
hold, resumes, hangs up, and both unregister when they close::

    python examples/softphone_register.py                 # the test bed described above
    python examples/softphone_register.py --registrar sip:192.0.2.10:5060 \\
        --user alice --password secret --call bob          # your own registrar/proxy

:func:`register_softphone` is the part a softphone needs (``examples/softphone.py`` can call it):
it registers, keeps the binding refreshed (``ua.register`` does: the session layer drives the
refresh timer), and makes the password answer the 401/407 of calls through the same proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from invsess.aio import AsyncRegistration, Call, SendGuard, UserAgent
from invsess.auth import DigestAuthenticator
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState
from invsess.logs import configure
from invsess.registration import Registrar
from invsess.sdp import parse_sdp
from invsess.testing.kamailio import Kamailio, find_kamailio

CFG = Path(__file__).resolve().parent / "kamailio" / "registrar-proxy.cfg"
USERS = {"alice": "alice-secret", "bob": "bob-secret"}


def sdp(user: str, port: int):  # type: ignore[no-untyped-def]
    return parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
    )


async def softphone(user: str, port: int) -> UserAgent:
    """A user agent for ``user`` on a free loopback port."""
    config = EndpointConfig(allow=("INVITE", "BYE", "UPDATE", "OPTIONS"))
    return await UserAgent.create(
        ["udp:127.0.0.1:0"], sdp=sdp(user, port), user=user, config=config, guard=SendGuard.loopback_only()
    )


async def register_softphone(
    ua: UserAgent, registrar: str, user: str, password: str, *, proxy: str | None = None, expires: int = 600
) -> AsyncRegistration:
    """Register ``user`` (through ``proxy`` when given) and report the binding; raises
    ``RegistrationError`` with the registrar's final response when it refuses."""
    route = [proxy] if proxy else []
    registration = await ua.register(registrar, user, password, expires=expires, route=route)
    print(f"{user}: registered {registration.contact} for {registration.expires} s")
    return registration


async def answer_calls(ua: UserAgent) -> None:
    """Answer every incoming call (ring, then 200), and release it when it ends."""
    while True:
        call = await ua.incoming()
        await call.answer(180)
        await call.answer(200)
        asyncio.get_running_loop().create_task(_release_when_over(call))


async def _release_when_over(call: Call) -> None:
    with contextlib.suppress(Exception):
        await call.wait_for(InviteState.DISCONNECTED, timeout=None)
    await call.close()


@contextlib.contextmanager
def test_bed() -> Iterator[tuple[str, Kamailio | None]]:
    """A registrar URI: a Kamailio started for the purpose when installed, else None (the
    caller then runs an invsess registrar)."""
    if find_kamailio() is None:
        yield "", None
        return
    substs = {"USER_A": "alice", "PASS_A": USERS["alice"], "USER_B": "bob", "PASS_B": USERS["bob"]}
    with Kamailio(CFG, substs=substs) as kamailio:
        yield kamailio.sip_uri, kamailio


async def demo() -> int:
    with test_bed() as (kamailio_uri, kamailio):
        server = None
        registrar = kamailio_uri
        if kamailio is None:  # an invsess registrar requiring digest authentication
            server = await UserAgent.create(
                ["udp:127.0.0.1:0"], sdp=sdp("registrar", 40010), user="registrar",
                config=EndpointConfig(allow=("REGISTER", "OPTIONS")), guard=SendGuard.loopback_only(),
            )  # fmt: skip
            server.endpoint.authenticator = DigestAuthenticator("invsess.example", USERS)
            location = Registrar(server.endpoint)
            server.layer.attach(location)
            host, port = server.endpoint.listeners["udp"]
            registrar = f"sip:{host}:{port}"
            print(f"registrar: invsess at {registrar} (Kamailio is not installed)")
        else:
            print(f"registrar and proxy: Kamailio at {registrar}")
        alice = await softphone("alice", 40000)
        bob = await softphone("bob", 40002)
        answering = asyncio.get_running_loop().create_task(answer_calls(bob))
        await register_softphone(alice, registrar, "alice", USERS["alice"])
        await register_softphone(bob, registrar, "bob", USERS["bob"])
        if kamailio is not None:
            aors = [a["Info"]["AoR"] for d in kamailio.rpc("ul.dump")["Domains"] for a in d["Domain"]["AoRs"]]
            print("Kamailio's location table:", sorted(aors))
            # By name, through the proxy: it authenticates the INVITE (407) and finds Bob.
            call = await alice.call(f"sip:bob@{registrar[4:]}", route=[f"{registrar};lr"])
        else:
            (binding,) = location.lookup("bob", server.now())  # type: ignore[union-attr]
            call = await alice.call(binding.uri)  # no proxy here: Bob's registered contact
        await call.wait_for(InviteState.CONFIRMED)
        print("connected; route set:", [str(r) for r in call.dialog.route_set])
        await call.hold()
        await call.resume()
        await call.hangup()
        print("states:", [s.name for s in call.history], "cause", call.cause)
        await call.close()
        answering.cancel()
        leaked = 0
        for name, ua in (("alice", alice), ("bob", bob)):
            report = await ua.close()  # hangs up what is left, unregisters (Expires: 0)
            print(f"{name}: {report.format()}")
            leaked += len(report.format().splitlines()) if report else 0
        if server is not None:
            print(f"registrar: {(await server.close()).format()}")
        if kamailio is not None:
            aors = [a for d in kamailio.rpc("ul.dump")["Domains"] for a in d["Domain"]["AoRs"]]
            print("Kamailio's location table after closing:", aors)
    return 1 if leaked else 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrar", help="sip:HOST:PORT (an IP address); without it, a test bed")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--proxy", help="outbound proxy, e.g. sip:HOST:PORT;lr")
    parser.add_argument("--call", help="a user to call by name through the registrar's domain")
    args = parser.parse_args()
    configure("warning")
    if not args.registrar:
        return await demo()
    if not (args.user and args.password):
        parser.error("--registrar needs --user and --password")
    ua = await softphone(args.user, 40000)
    await register_softphone(ua, args.registrar, args.user, args.password, proxy=args.proxy)
    if args.call:
        call = await ua.call(
            f"sip:{args.call}@{args.registrar[4:]}", route=[args.proxy] if args.proxy else []
        )
        await call.wait_for(InviteState.CONFIRMED, timeout=30)
        await asyncio.sleep(2)
        await call.hangup()
        await call.close()
    print((await ua.close()).format())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
