"""Export a trace to a pcap file Wireshark, tshark and sngrep read (built with dpkt).

UDP messages become Ethernet/IP/UDP frames; TCP and TLS messages become TCP segments with a
running sequence number per direction, so dissectors reassemble them (TLS traces carry the
plain SIP that was inside the TLS record, labelled as TCP on the TLS port).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dpkt

from invsess.trace.record import MessageEvent, Trace

_MAC_A = b"\x02\x00\x00\x00\x00\x01"
_MAC_B = b"\x02\x00\x00\x00\x00\x02"


def _ip_packet(event: MessageEvent, payload: dpkt.Packet, proto: int) -> tuple[dpkt.Packet, int]:
    src = ipaddress.ip_address(event.source[0])
    dst = ipaddress.ip_address(event.destination[0])
    if src.version != dst.version:
        raise ValueError(f"cannot frame {event.source} -> {event.destination}: mixed IP versions")
    if src.version == 4:
        return dpkt.ip.IP(
            src=src.packed, dst=dst.packed, p=proto, ttl=64, data=payload
        ), dpkt.ethernet.ETH_TYPE_IP
    ip6 = dpkt.ip6.IP6(src=src.packed, dst=dst.packed, nxt=proto, hlim=64, data=payload)
    ip6.plen = len(bytes(payload))
    return ip6, dpkt.ethernet.ETH_TYPE_IP6


def write_pcap(trace: Trace, path: str | Path, *, epoch: float = 0.0) -> int:
    """Write every delivered (or duplicated) message; returns how many frames were written.

    ``epoch`` is added to the trace's times (virtual traces start at 0).
    """
    seq: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}
    count = 0
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for event in trace.messages():
            if event.fate not in ("delivered", "duplicated"):
                continue
            sport, dport = event.source[1], event.destination[1]
            if event.transport == "udp":
                transport: dpkt.Packet = dpkt.udp.UDP(sport=sport, dport=dport, data=event.data)
                transport.ulen = len(bytes(transport))
                proto = dpkt.ip.IP_PROTO_UDP
            else:
                key = (event.source, event.destination)
                number = seq.get(key, 1)
                transport = dpkt.tcp.TCP(
                    sport=sport, dport=dport, seq=number, ack=1, flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK,
                    win=65535, data=event.data,
                )  # fmt: skip
                seq[key] = number + len(event.data)
                proto = dpkt.ip.IP_PROTO_TCP
            ip, eth_type = _ip_packet(event, transport, proto)
            frame = dpkt.ethernet.Ethernet(src=_MAC_A, dst=_MAC_B, type=eth_type, data=ip)
            writer.writepkt(bytes(frame), ts=epoch + event.time)
            count += 1
    return count
