"""The Kamailio test bed (invsess.testing.kamailio) against the real Debian ``kamailio``.

Also the record of what Kamailio 5.6's JSON-RPC really returns (keys and types), which the
observability work compares invsess's answers with.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from invsess.aio import AsyncEndpoint, SendGuard
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.sip import NameAddress, make_request, parse_uri
from invsess.testing.kamailio import (
    Kamailio,
    KamailioModuleMissingError,
    KamailioRPCError,
    KamailioStartError,
    find_kamailio,
)
from invsess.testing.plugin import KAMAILIO_MISSING
from invsess.transaction import ResponseReceived, TimerConfig

ROOT = Path(__file__).resolve().parent.parent
RPC_ONLY = ROOT / "examples" / "kamailio" / "rpc-only.cfg"
needs_kamailio = pytest.mark.skipif(find_kamailio() is None, reason=KAMAILIO_MISSING)

# A config exercising both ways a test passes values: -A defines (#!ifdef, tokens) and
# --substdef values (expanded inside strings too).
VALUES_CFG = """#!KAMAILIO
children=1
tcp_children=1
dns=no
rev_dns=no
auto_aliases=no
listen=udp:SIP_ADDR:SIP_PORT
listen=tcp:HTTP_ADDR:HTTP_PORT
tcp_accept_no_cl=yes
loadmodule "pv.so"
loadmodule "sl.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
modparam("jsonrpcs", "transport", 1)
request_route {
#!ifdef BUSY
    sl_send_reply("486", "Busy " + GREETING);
#!else
    sl_send_reply("200", "OK " + GREETING);
#!endif
}
event_route[xhttp:request] {
    jsonrpc_dispatch();
}
"""


@needs_kamailio
def test_rpc_answers_have_kamailios_shapes(kamailio_factory) -> None:
    kam = kamailio_factory(RPC_ONLY)
    assert kam.startup_seconds is not None and kam.startup_seconds < 20

    version = kam.rpc("core.version")
    assert isinstance(version, str)
    assert re.match(r"kamailio \d+\.\d+\.\d+ ", version)

    # pkg.stats: one entry per process, every field an int except desc.
    pkg = kam.rpc("pkg.stats")
    assert isinstance(pkg, list)
    assert len(pkg) >= 5  # attendant, 2 UDP and 2 TCP workers (children=2 in TESTBED_MODE), ...
    int_keys = {"entry", "pid", "rank", "used", "free", "real_used", "total_size", "total_frags"}
    for row in pkg:
        assert set(row) == {*int_keys, "desc"}
        assert all(type(row[k]) is int for k in int_keys), row
        assert isinstance(row["desc"], str)
        assert row["total_size"] == 8 * 1024 * 1024  # -M 8
    assert pkg[0]["desc"] == "main process - attendant"
    assert [row["entry"] for row in pkg] == list(range(len(pkg)))
    assert len({row["pid"] for row in pkg}) == len(pkg)

    # core.shmmem: six ints; total is -m 64.
    shm = kam.rpc("core.shmmem")
    assert set(shm) == {"total", "free", "used", "real_used", "max_used", "fragments"}
    assert all(type(v) is int for v in shm.values())
    assert shm["total"] == 64 * 1024 * 1024
    assert shm["used"] <= shm["real_used"] <= shm["max_used"] <= shm["total"]

    # stats.get_statistics all: strings "group:name = value".
    everything = kam.rpc("stats.get_statistics", "all")
    assert isinstance(everything, list)
    assert all(isinstance(line, str) and re.fullmatch(r"\w+:[\w.-]+ = \d+", line) for line in everything)
    names = {line.split(" = ")[0] for line in everything}
    assert {"shmem:used_size", "shmem:total_size", "core:rcv_requests"} <= names

    # stats.get_statistics for a group: only that group.
    group = kam.rpc("stats.get_statistics", "shmem:")
    assert group and all(line.startswith("shmem:") for line in group)

    # stats.fetch: "group.name" keys, values as strings of digits.
    fetched = kam.rpc("stats.fetch", "shmem:")
    assert set(fetched) == {
        "shmem.fragments",
        "shmem.free_size",
        "shmem.max_used_size",
        "shmem.real_used_size",
        "shmem.total_size",
        "shmem.used_size",
    }
    assert all(isinstance(v, str) and v.isdigit() for v in fetched.values())
    assert fetched["shmem.total_size"] == str(64 * 1024 * 1024)


@needs_kamailio
def test_rpc_error_is_typed(kamailio_factory) -> None:
    kam = kamailio_factory(RPC_ONLY)
    with pytest.raises(KamailioRPCError) as caught:
        kam.rpc("no.such.method")
    # Kamailio's own code and message, not JSON-RPC's -32601.
    assert (caught.value.code, caught.value.message) == (500, "Method Not Found")
    assert caught.value.method == "no.such.method"
    assert kam.rpc("core.version")  # still serving


@needs_kamailio
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_options_answered_through_the_endpoint(kamailio_factory, transport: str) -> None:
    kam = kamailio_factory(RPC_ONLY)
    aep = AsyncEndpoint(
        Endpoint(EndpointConfig(malloc_debug=True, timers=TimerConfig(t1=0.05, t2=0.2, t4=0.1))),
        guard=SendGuard.loopback_only(),
    )
    await aep.listen(f"{transport}:127.0.0.1:0")
    request = make_request(
        "OPTIONS",
        f"{kam.sip_uri};transport={transport}",
        via=aep.endpoint.via(transport),
        from_=NameAddress(parse_uri("sip:alice@127.0.0.1"), None, (("tag", aep.endpoint.new_tag()),)),
        to=NameAddress(parse_uri(kam.sip_uri)),
        call_id=f"kam-{aep.endpoint.new_tag()}",
        cseq=1,
    )
    aep.endpoint.send_request(request, kam.sip_address, transport, aep.now())
    aep.flush()
    event = await aep.next_event(timeout=5)
    assert isinstance(event, ResponseReceived), event
    assert event.response.status_code == 200
    assert not await aep.close(timeout=2.0)
    assert aep.guard.refused == []


@needs_kamailio
def test_options_probe_sees_the_configs_answer(kamailio_factory) -> None:
    kam = kamailio_factory(RPC_ONLY)
    assert kam.options() == 200


@needs_kamailio
def test_defines_and_substitutions_reach_the_config(kamailio_factory, tmp_path: Path) -> None:
    cfg = tmp_path / "values.cfg"
    cfg.write_text(VALUES_CFG)
    plain = kamailio_factory(cfg, substs={"GREETING": '"from the test"'})
    busy = kamailio_factory(cfg, defines={"BUSY": None}, substs={"GREETING": '"busy here"'})
    assert plain.options() == 200
    assert busy.options() == 486
    # The substituted string (a quoted one: expanded inside the reason's expression) is on the wire.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        sock.sendto(
            (
                f"OPTIONS {busy.sip_uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKvals\r\n"
                "From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:k@127.0.0.1>\r\nCall-ID: vals\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            busy.sip_address,
        )
        assert sock.recv(65535).startswith(b"SIP/2.0 486 Busy busy here\r\n")


@needs_kamailio
def test_broken_config_fails_with_kamailios_message(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.cfg"
    cfg.write_text(RPC_ONLY.read_text().replace('sl_send_reply("200", "OK");', "no_such_function();"))
    kam = Kamailio(cfg)
    with pytest.raises(KamailioStartError) as caught:
        kam.start()
    text = str(caught.value)
    assert "Kamailio exited with status" in text
    assert "unknown command, missing loadmodule?" in text  # Kamailio's own words
    assert f"parse error in config file {cfg}" in text
    assert "unknown command" in caught.value.log_tail
    assert not kam.running
    assert kam.run_dir is not None and not kam.run_dir.exists()
    assert "unknown command" in kam.log  # the log outlives the run directory


@needs_kamailio
def test_missing_module_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "nomodule.cfg"
    cfg.write_text(RPC_ONLY.read_text().replace('loadmodule "kex.so"', 'loadmodule "nosuchmod.so"'))
    with pytest.raises(KamailioModuleMissingError) as caught:
        Kamailio(cfg).start()
    assert caught.value.module == "nosuchmod"
    assert "could not find module <nosuchmod>" in caught.value.log_tail


@needs_kamailio
def test_a_config_that_never_serves_rpc_times_out(tmp_path: Path) -> None:
    cfg = tmp_path / "norpc.cfg"
    cfg.write_text(
        "#!KAMAILIO\nchildren=1\ndns=no\nrev_dns=no\nauto_aliases=no\n"
        'listen=udp:SIP_ADDR:SIP_PORT\nloadmodule "sl.so"\n'
        'request_route {\n    sl_send_reply("200", "OK");\n}\n'
    )
    kam = Kamailio(cfg, start_timeout=1.5)
    with pytest.raises(KamailioStartError, match=r"did not serve within 1\.5 s \(JSON-RPC at http://127"):
        kam.start()
    assert not kam.running


@needs_kamailio
def test_two_instances_at_once(kamailio_factory) -> None:
    first = kamailio_factory(RPC_ONLY)
    second = kamailio_factory(RPC_ONLY)
    ports = {first.sip_port, first.http_port, second.sip_port, second.http_port}
    assert len(ports) == 4
    pids = {row["pid"] for row in first.rpc("pkg.stats")}
    assert pids.isdisjoint(row["pid"] for row in second.rpc("pkg.stats"))
    assert first.options() == second.options() == 200
    first.stop()
    assert not first.running
    assert second.rpc("core.version") and second.options() == 200


@needs_kamailio
def test_stop_ends_every_process_and_keeps_the_log() -> None:
    with Kamailio(RPC_ONLY) as kam:
        pids = [row["pid"] for row in kam.rpc("pkg.stats")]
        run_dir = kam.run_dir
        assert run_dir is not None and (run_dir / "kamailio.log").exists()
    assert kam.process is not None and kam.process.returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not run_dir.exists()
    assert "signal 15 received" in kam.log
    assert kam.stop() == 0  # twice is harmless


def test_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    cfg = tmp_path / "any.cfg"
    cfg.write_text("#!KAMAILIO\n")
    with pytest.raises(ValueError, match="loopback only"):
        Kamailio(cfg, host="192.0.2.1")
    with pytest.raises(ValueError, match="set by the test bed"):
        Kamailio(cfg, substs={"SIP_PORT": 5060})
    with pytest.raises(ValueError, match="not a preprocessor name"):
        Kamailio(cfg, defines={"NOT-A-NAME": None})
    with pytest.raises(ValueError, match="backslash"):
        Kamailio(cfg, substs={"X": "a\\1"})
    with pytest.raises(FileNotFoundError):
        Kamailio(tmp_path / "missing.cfg")


def test_fixture_skips_without_kamailio(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVSESS_KAMAILIO", str(pytester.path / "no-kamailio-here"))
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("def test_needs_it(kamailio_factory):\n    raise AssertionError('ran')\n")
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*kamailio is not installed*kamailio-extra-modules*"])


@needs_kamailio
def test_fixture_reports_logs_and_deaths(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        f"""
        import os, signal
        CFG = {str(RPC_ONLY)!r}

        def test_fails_with_kamailio(kamailio_factory):
            kamailio_factory(CFG)
            raise AssertionError("deliberate")

        def test_kamailio_dies(kamailio_factory):
            kam = kamailio_factory(CFG)
            os.kill(kam.process.pid, signal.SIGKILL)
            kam.process.wait()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1, errors=1)
    result.stdout.fnmatch_lines(["*Kamailio died during the test*"])  # the teardown error
    result.stdout.fnmatch_lines(["*Kamailio #0 log (last lines)*", "*Listening on*"])  # the failure
