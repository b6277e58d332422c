"""Ladder (sequence) diagrams of a trace: in the terminal, and as SVG."""

from __future__ import annotations

from xml.sax.saxutils import escape

from invsess.address import format_address
from invsess.trace.record import MessageEvent, StateEvent, Trace

_COLOURS = {
    "request": "\x1b[36m",
    "1xx": "\x1b[33m",
    "2xx": "\x1b[32m",
    "error": "\x1b[31m",
    "lost": "\x1b[90m",
}
_RESET = "\x1b[0m"


def _kind(event: MessageEvent) -> str:
    if event.fate not in ("delivered", "duplicated"):
        return "lost"
    line = event.first_line
    if not line.startswith("SIP/2.0 "):
        return "request"
    code = line[8:11]
    return "1xx" if code.startswith("1") else "2xx" if code.startswith("2") else "error"


def render_text(
    trace: Trace, *, colour: bool = False, column: int = 24, label: int = 48, relative: bool = False
) -> str:
    """One row per event: time (from the first event when ``relative``), lifelines, an arrow."""
    people = trace.participants()
    if not people:
        return "(empty trace)"
    origin = trace.events[0].time if relative else 0.0
    index = {p: i for i, p in enumerate(people)}
    width = column * (len(people) - 1) + 1
    header = "".join(format_address(p).center(column)[:column] for p in people)
    rows = [" " * 11 + header.rstrip()]
    start = (column - 1) // 2
    for event in trace:
        lane = [" "] * (width + start)
        for i in range(len(people)):
            lane[start + i * column] = "|"
        if isinstance(event, MessageEvent):
            a, b = index[event.source], index[event.destination]
            lo, hi = sorted((a, b))
            left, right = start + lo * column, start + hi * column
            for x in range(left + 1, right):
                lane[x] = "-"
            if a == b:
                lane[left] = "o"
            elif a < b:
                lane[right - 1] = ">"
            else:
                lane[left + 1] = "<"
            text = event.first_line[:label]
            if event.fate != "delivered":
                text += f" [{event.fate}]"
            mid = (left + right) // 2 - len(text) // 2
            if a != b and right - left > len(text) + 4:
                lane[mid : mid + len(text)] = list(text)
                body = "".join(lane).rstrip()
            else:
                body = "".join(lane).rstrip() + "  " + text
            if colour:
                body = f"{_COLOURS[_kind(event)]}{body}{_RESET}"
        else:
            x = start + index[event.where] * column
            note = f"* {event.what}: {event.old} -> {event.new}"
            body = "".join(lane[:x]) + note
        rows.append(f"{event.time - origin:10.3f} {body}")
    return "\n".join(rows)


def render_svg(trace: Trace, *, column: int = 260, row: int = 26) -> str:
    """A standalone SVG sequence diagram."""
    people = trace.participants()
    index = {p: i for i, p in enumerate(people)}
    margin, top = 130, 50
    width = margin + column * max(len(people) - 1, 1) + 120
    height = top + row * (len(trace) + 1) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        ' font-family="monospace" font-size="12">',
        '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
        '<path d="M0,0 L10,4 L0,8 z"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    xs = {p: margin + i * column for p, i in index.items()}
    for p, x in xs.items():
        out.append(
            f'<text x="{x}" y="24" text-anchor="middle" font-weight="bold">{escape(format_address(p))}</text>'
        )
        out.append(
            f'<line x1="{x}" y1="32" x2="{x}" y2="{height - 10}" stroke="#999" stroke-dasharray="4 3"/>'
        )
    colours = {
        "request": "#1f6feb",
        "1xx": "#b08800",
        "2xx": "#1a7f37",
        "error": "#cf222e",
        "lost": "#8c959f",
    }
    for n, event in enumerate(trace, 1):
        y = top + n * row
        out.append(f'<text x="8" y="{y + 4}" fill="#555">{event.time:.3f}</text>')
        if isinstance(event, MessageEvent):
            x1, x2 = xs[event.source], xs[event.destination]
            colour = colours[_kind(event)]
            dash = ' stroke-dasharray="6 4"' if event.fate not in ("delivered", "duplicated") else ""
            out.append(
                f'<line class="message" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}"'
                f' stroke-width="1.5" marker-end="url(#arrow)"{dash}/>'
            )
            label = event.first_line[:60] + ("" if event.fate == "delivered" else f" [{event.fate}]")
            mid = (x1 + x2) / 2
            out.append(
                f'<text x="{mid}" y="{y - 5}" text-anchor="middle" fill="{colour}">{escape(label)}</text>'
            )
        elif isinstance(event, StateEvent):
            x = xs[event.where]
            note = f"{event.what}: {event.old} → {event.new}"
            out.append(f'<text class="state" x="{x + 6}" y="{y + 4}" fill="#6e40c9">{escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out)
