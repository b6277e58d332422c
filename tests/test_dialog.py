"""Dialogs: creation on both sides, in-dialog requests, CSeq rules, routing, memory."""

from __future__ import annotations

import pytest

from invsess.dialog import Dialog, DialogRole, DialogState
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.memory import PoolFactory, UseAfterFreeError
from invsess.sip import (
    LocalProtocolError,
    NameAddress,
    RemoteProtocolError,
    Request,
    SipUri,
    Via,
    make_request,
    make_response,
    parse_message,
    parse_uri,
)
from invsess.transaction import RequestReceived

ALICE_CONTACT = NameAddress(parse_uri("sip:alice@127.0.0.1:5061"))
BOB_CONTACT = NameAddress(parse_uri("sip:bob@127.0.0.2:5062"))


def invite(record_route: tuple[str, ...] = ()) -> Request:
    req = make_request(
        "INVITE",
        "sip:bob@example.com",
        via=Via("UDP", "127.0.0.1", 5061, (("branch", "z9hG4bKinv"),)),
        from_=NameAddress(parse_uri("sip:alice@example.com"), "Alice", (("tag", "at"),)),
        to=NameAddress(parse_uri("sip:bob@example.com"), "Bob"),
        call_id="dlg-1",
        cseq=10,
        contact=ALICE_CONTACT,
        headers=[("Record-Route", rr) for rr in record_route],
    )
    parsed = parse_message(req.serialize())
    assert isinstance(parsed, Request)
    return parsed


def ok(req: Request, code: int = 200):
    resp = make_response(req, code, to_tag="bt", headers=[("Contact", BOB_CONTACT)], copy_record_route=True)
    return parse_message(resp.serialize())


def test_uac_and_uas_dialogs_mirror_each_other() -> None:
    factory = PoolFactory(malloc_debug=True)
    req = invite(("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"))
    uas = Dialog.create_uas(factory, req, local_tag="bt", local_contact=BOB_CONTACT)
    uac = Dialog.create_uac(factory, req, ok(req, 180))
    assert uac.role is DialogRole.UAC and uac.state is DialogState.EARLY
    assert uas.state is DialogState.EARLY
    assert uac.id == ("dlg-1", "at", "bt")
    assert uas.id == ("dlg-1", "bt", "at")
    assert [str(r.uri) for r in uac.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert [str(r.uri) for r in uas.route_set] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert str(uac.remote_target) == "sip:bob@127.0.0.2:5062"
    assert str(uas.remote_target) == "sip:alice@127.0.0.1:5061"
    uac.confirm(ok(req))
    assert uac.state.name == "CONFIRMED"


def test_in_dialog_request_loose_routing_and_cseq() -> None:
    factory = PoolFactory(malloc_debug=True)
    req = invite(("<sip:p1.example.com;lr>",))
    uac = Dialog.create_uac(factory, req, ok(req))
    bye = uac.create_request("BYE", via=Via("UDP", "127.0.0.1", 5061, (("branch", "z9hG4bKbye"),)))
    assert bye.cseq is not None and bye.cseq.number == 11
    assert str(bye.uri) == "sip:bob@127.0.0.2:5062"
    assert [str(r.uri) for r in bye.route] == ["sip:p1.example.com;lr"]
    assert bye.to is not None and bye.to.tag == "bt"
    assert bye.from_ is not None and bye.from_.tag == "at"
    assert uac.next_hop() == ("p1.example.com", 5060, "udp")
    ack = uac.create_request("ACK", via=Via("UDP", "127.0.0.1", 5061, (("branch", "z9hG4bKack"),)), cseq=10)
    assert ack.cseq is not None and (ack.cseq.number, ack.cseq.method) == (10, "ACK")
    with pytest.raises(LocalProtocolError, match="reuses"):
        uac.create_request("ACK", via=Via("UDP", "h"))


def test_strict_routing() -> None:
    factory = PoolFactory(malloc_debug=True)
    req = invite(("<sip:strict.example.com>",))
    uac = Dialog.create_uac(factory, req, ok(req))
    bye = uac.create_request("BYE", via=Via("UDP", "127.0.0.1", 5061))
    assert str(bye.uri) == "sip:strict.example.com"
    assert [str(r.uri) for r in bye.route] == ["sip:bob@127.0.0.2:5062"]


def test_remote_cseq_must_increase_and_target_refresh() -> None:
    factory = PoolFactory(malloc_debug=True)
    req = invite()
    uas = Dialog.create_uas(factory, req, local_tag="bt", local_contact=BOB_CONTACT)
    reinvite = invite()
    reinvite.headers.set("CSeq", "10 INVITE")
    with pytest.raises(RemoteProtocolError) as info:
        uas.receive_request(reinvite)
    assert info.value.status_code == 500
    reinvite.headers.set("CSeq", "11 INVITE")
    reinvite.headers.set("Contact", "<sip:alice@127.0.0.9:7000>")
    uas.receive_request(reinvite)
    assert uas.remote_cseq == 11
    assert str(uas.remote_target) == "sip:alice@127.0.0.9:7000"


def test_destroyed_when_session_and_transaction_counts_reach_zero() -> None:
    factory = PoolFactory(malloc_debug=True)
    req = invite()
    dlg = Dialog.create_uac(factory, req, ok(req))
    dlg.add_ref("inv-session")
    dlg.inc_tsx()
    dlg.dec_ref("inv-session")  # the session is gone, a transaction is still working
    assert not dlg.pool.released
    pool = dlg.pool
    dlg.dec_tsx()
    assert pool.released
    assert pool.free_record is not None
    assert pool.free_record.reason == "dialog transaction count 1 -> 0"
    assert pool.free_record.context == {
        "call_id": "dlg-1",
        "local_tag": "at",
        "remote_tag": "bt",
        "state": "TERMINATED",
    }
    with pytest.raises(UseAfterFreeError) as info:
        dlg.create_request("BYE", via=Via("UDP", "h"))
    assert info.value.report.context["call_id"] == "dlg-1"
    assert not factory.leak_report()


def test_creation_errors_leak_nothing() -> None:
    factory = PoolFactory(malloc_debug=True)
    req = invite()
    no_tag = parse_message(make_response(req, 180, headers=[("Contact", BOB_CONTACT)]).serialize())
    with pytest.raises(RemoteProtocolError, match="To tag"):
        Dialog.create_uac(factory, req, no_tag)  # type: ignore[arg-type]
    no_contact = parse_message(make_response(req, 200, to_tag="bt").serialize())
    with pytest.raises(RemoteProtocolError, match="Contact"):
        Dialog.create_uac(factory, req, no_contact)  # type: ignore[arg-type]
    req.headers.remove("Contact")
    legacy = Dialog.create_uas(factory, req, local_tag="x", local_contact=BOB_CONTACT)  # RFC 2543: no Contact
    assert str(legacy.remote_target) == "sip:alice@example.com"  # the From URI stands in
    legacy.add_ref("t")
    legacy.dec_ref("t")
    assert not factory.leak_report()
    assert isinstance(BOB_CONTACT.uri, SipUri)


def test_endpoint_routes_registered_dialogs_and_481s_the_rest() -> None:
    ep = Endpoint(EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE")))
    ep.add_listener("udp", ("127.0.0.2", 5062))
    bye = (
        b"BYE sip:bob@127.0.0.2:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKb1\r\n"
        b"From: <sip:alice@example.com>;tag=at\r\nTo: <sip:bob@example.com>;tag=bt\r\nCall-ID: dlg-1\r\n"
        b"CSeq: 11 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    ep.receive(bye, ("127.0.0.1", 5061), "udp", 0.0)
    assert parse_message(ep.datagrams_to_send()[0].data).status_code == 481  # type: ignore[union-attr]
    ep.register_dialog(("dlg-1", "bt", "at"))
    ep.receive(bye.replace(b"z9hG4bKb1", b"z9hG4bKb2"), ("127.0.0.1", 5061), "udp", 0.0)
    assert isinstance(ep.next_event(), RequestReceived)
    ep.unregister_dialog(("dlg-1", "bt", "at"))
    assert not ep.close()
