"""Traces, ladders (text and SVG), pcap export, and `invsess ladder`."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import dpkt
import pytest
from click.testing import CliRunner

from invsess.cli import main
from invsess.testing import LinkProfile, SimNetwork
from invsess.testing.plugin import EndpointFactory
from invsess.trace import MessageEvent, Trace, render_svg, render_text, write_pcap

from .test_testing import options

TSHARK = shutil.which("tshark")


def sample_trace(loss: float = 0.0) -> Trace:
    net = SimNetwork(5, default=LinkProfile(loss=loss))
    factory = EndpointFactory(net)
    a = factory(("127.0.0.1", 5060))
    factory(("127.0.0.2", 5060))
    for i in range(3):
        a.send_request(options(a, ("127.0.0.2", 5060), f"t{i}"), ("127.0.0.2", 5060), "udp", net.now)
    net.run_until_idle()
    trace = Trace([*net.trace])
    trace.state(0.5, ("127.0.0.2", 5060), "tsx z9hG4bKx", "TRYING", "COMPLETED")
    for endpoint, _ in factory.endpoints:
        assert not endpoint.close()
    return trace


def test_json_lines_round_trip_exactly() -> None:
    trace = sample_trace(loss=0.3)
    again = Trace.loads(trace.dumps())
    assert again == trace
    assert {m.fate for m in again.messages()} >= {"delivered", "lost"}
    assert again.participants() == [("127.0.0.1", 5060), ("127.0.0.2", 5060)]


@pytest.mark.parametrize(
    "bad",
    ['{"kind": "message"}', "not json", '{"kind": "nope", "time": 1}', '{"kind":"message","time":0,"source":"a:1",'
     '"destination":"b:2","transport":"udp","data":"!!!"}'],
)  # fmt: skip
def test_bad_trace_lines_say_where(bad: str) -> None:
    with pytest.raises(ValueError, match="trace line 2"):
        Trace.loads(
            '{"kind": "state", "time": 0, "where": "127.0.0.1:1", "what": "x", "old": "A", "new": "B"}\n'
            + bad
        )


def test_text_ladder_arrows_and_colour() -> None:
    trace = sample_trace()
    text = render_text(trace)
    lines = text.splitlines()
    assert "127.0.0.1:5060" in lines[0] and "127.0.0.2:5060" in lines[0]
    assert any("|---" in line and ">|" in line and "OPTIONS" in line for line in lines)
    assert any("|<" in line and "200 OK" in line for line in lines)
    assert "* tsx z9hG4bKx: TRYING -> COMPLETED" in text
    assert "\x1b[" not in text
    assert "\x1b[32m" in render_text(trace, colour=True)  # 2xx in green
    assert render_text(Trace()) == "(empty trace)"


def test_svg_is_valid_and_draws_every_message() -> None:
    trace = sample_trace(loss=0.2)
    root = ET.fromstring(render_svg(trace))
    ns = "{http://www.w3.org/2000/svg}"
    arrows = [e for e in root.iter(f"{ns}line") if e.get("class") == "message"]
    assert len(arrows) == len(trace.messages())
    assert any("OPTIONS" in (t.text or "") for t in root.iter(f"{ns}text"))


def test_pcap_frames_read_back(tmp_path: Path) -> None:
    trace = sample_trace()
    trace.message(
        9.0, ("::1", 5070), ("::1", 5080), "tcp", b"OPTIONS sip:x@[::1] SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    )
    path = tmp_path / "t.pcap"
    written = write_pcap(trace, path, epoch=1_700_000_000)
    assert written == len(trace.messages())
    with path.open("rb") as fh:
        frames = list(dpkt.pcap.Reader(fh))
    payloads = [dpkt.ethernet.Ethernet(buf).data.data.data for _, buf in frames]
    assert payloads == [m.data for m in trace.messages()]
    assert frames[0][0] == pytest.approx(1_700_000_000)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (.ci/run installs it)")
def test_tshark_decodes_the_sip(tmp_path: Path) -> None:
    trace = sample_trace()
    path = tmp_path / "t.pcap"
    write_pcap(trace, path)
    out = subprocess.run(
        [TSHARK or "tshark", "-r", str(path), "-Y", "sip", "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split("\n")  # fmt: skip
    decoded = [line.strip() for line in out if line.strip()]
    assert decoded.count("OPTIONS") == 3
    assert decoded.count("200") == 3


def test_cli_ladder(tmp_path: Path) -> None:
    trace_file = tmp_path / "call.jsonl"
    sample_trace().write(trace_file)
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["ladder", str(trace_file), "--svg", str(tmp_path / "l.svg"), "--pcap", str(tmp_path / "l.pcap")],
    )
    assert result.exit_code == 0, result.output
    assert "OPTIONS sip:x@127.0.0.2:5060" in result.output
    assert (tmp_path / "l.svg").read_text().startswith("<svg")
    assert (tmp_path / "l.pcap").stat().st_size > 0
    (tmp_path / "bad.jsonl").write_text("oops\n")
    bad = runner.invoke(main, ["ladder", str(tmp_path / "bad.jsonl")])
    assert bad.exit_code != 0
    assert "trace line 1" in bad.output


def test_message_event_first_line() -> None:
    event = MessageEvent(0.0, ("a", 1), ("b", 2), "udp", b"BYE sip:x SIP/2.0\r\n\r\n")
    assert event.first_line == "BYE sip:x SIP/2.0"


def test_one_call_of_a_trace_timed_from_its_start() -> None:
    a, b = ("127.0.0.1", 5060), ("127.0.0.2", 5060)
    trace = Trace()
    trace.message(10.0, a, b, "udp", b"INVITE sip:x SIP/2.0\r\nCall-ID: one@a\r\n\r\nCall-ID: body@a")
    trace.message(10.5, a, b, "udp", b"INVITE sip:x SIP/2.0\r\ni:two@a\r\n\r\n")  # compact, no space
    trace.state(11.0, a, "session", "NULL", "CALLING", "two@a")
    trace.state(11.5, a, "tsx z9hG4bKx", "TRYING", "COMPLETED")  # no call: in no call's ladder
    assert trace.call_ids() == ["one@a", "two@a"]
    two = trace.for_call("two@a").rebased()
    assert [(e.time, type(e).__name__) for e in two] == [(0.0, "MessageEvent"), (0.5, "StateEvent")]
    assert Trace.loads(trace.dumps()) == trace  # the state's call_id survives JSON lines
    assert "call_id" not in trace.events[3].to_json()
    assert Trace().rebased() == Trace()
    assert "* session: NULL -> CALLING" in render_text(two)


FAILING = """
from invsess.sip import NameAddress, make_request, parse_uri

def test_fails_after_traffic(endpoint_factory, sip_network):
    a = endpoint_factory(("127.0.0.1", 5060))
    endpoint_factory(("127.0.0.2", 5060))
    req = make_request("OPTIONS", "sip:x@127.0.0.2", via=a.via("udp"),
        from_=NameAddress(parse_uri("sip:a@127.0.0.1"), None, (("tag", "1"),)),
        to=NameAddress(parse_uri("sip:x@127.0.0.2")), call_id="f1", cseq=1)
    a.send_request(req, ("127.0.0.2", 5060), "udp", 0.0)
    sip_network.run_until_idle()
    assert False, "the ladder must be in the report"
"""


def test_failed_test_report_carries_the_ladder(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(FAILING)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*invsess ladder*", "*OPTIONS sip:x@127.0.0.2 SIP/2.0*", "*SIP/2.0 200 OK*"])
