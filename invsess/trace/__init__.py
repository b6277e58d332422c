"""Traces of what happened (messages and state changes), ladder diagrams, pcap export."""

from invsess.trace.ladder import render_svg, render_text
from invsess.trace.pcap import write_pcap
from invsess.trace.record import MessageEvent, StateEvent, Trace, TraceEvent

__all__ = ["MessageEvent", "StateEvent", "Trace", "TraceEvent", "render_svg", "render_text", "write_pcap"]
