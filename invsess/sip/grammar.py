"""RFC 3261 §25 lexical rules: tokens, quoted strings, LWS, parameters, comma lists.

Everything here works on ``str`` (headers are decoded as UTF-8 with ``surrogateescape``, so any
byte survives a round trip) and raises only :class:`~invsess.sip.errors.ParseError`.
"""

from __future__ import annotations

import re

from invsess.sip.errors import ParseError

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_TOKEN_FULL = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_LWS_RE = re.compile(r"[ \t\r\n]*")
_DIGITS_FULL = re.compile(r"[0-9]+\Z")

#: Parameter values may be tokens, quoted strings, or hosts (IPv6 references included).
_PARAM_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")

Params = tuple[tuple[str, str | None], ...]


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token."""
    return _TOKEN_FULL.match(text) is not None


def is_digits(text: str) -> bool:
    """``1*DIGIT`` in ASCII (``str.isdigit`` also accepts "²", which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def parse_uint(text: str, what: str, *, maximum: int, header: str | None = None) -> int:
    """``1*DIGIT`` with an upper bound (RFC 4475 §3.1.2.4: overlarge scalars are errors)."""
    text = text.strip()
    if _DIGITS_FULL.match(text) is None:
        raise ParseError(f"{what} is not a number: {text!r}", header=header)
    value = int(text)
    if value > maximum:
        raise ParseError(f"{what} {value} is larger than {maximum}", header=header)
    return value


class Scanner:
    """A cursor over one header value, with the few moves the grammar needs."""

    __slots__ = ("header", "pos", "text")

    def __init__(self, text: str, header: str | None = None) -> None:
        self.text = text
        self.pos = 0
        self.header = header

    def error(self, what: str) -> ParseError:
        """A ParseError that shows where in the value the problem is."""
        return ParseError(f"{what} at offset {self.pos} in {self.text!r}", header=self.header)

    def at_end(self) -> bool:
        """True when only whitespace is left."""
        self.skip_lws()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        """The next character, or '' at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_lws(self) -> None:
        """Skip linear white space (folding was already undone; CR/LF tolerated)."""
        m = _LWS_RE.match(self.text, self.pos)
        if m is not None:
            self.pos = m.end()

    def accept(self, char: str) -> bool:
        """Consume ``char`` (after LWS) if it is next."""
        self.skip_lws()
        if self.text.startswith(char, self.pos):
            self.pos += len(char)
            return True
        return False

    def expect(self, char: str) -> None:
        """Consume ``char`` (after LWS) or fail."""
        if not self.accept(char):
            raise self.error(f"expected {char!r}")

    def token(self, what: str = "token") -> str:
        """A token (after LWS)."""
        self.skip_lws()
        m = _TOKEN_RE.match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group()

    def quoted_string(self) -> str:
        """A quoted string (after LWS), returned without quotes and with escapes undone."""
        self.skip_lws()
        if self.peek() != '"':
            raise self.error("expected '\"'")
        value, self.pos = read_quoted(self.text, self.pos, self.header)
        return value

    def until(self, stops: str) -> str:
        """Everything up to the first character in ``stops`` (or the end)."""
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in stops:
            self.pos += 1
        return text[start : self.pos]

    def rest(self) -> str:
        """Everything left, stripped."""
        value = self.text[self.pos :].strip()
        self.pos = len(self.text)
        return value

    def params(self, *, allow_quoted: bool = True) -> Params:
        """``*( SEMI generic-param )``; an empty parameter name is an error (RFC 4475 badinv01)."""
        out: list[tuple[str, str | None]] = []
        while self.accept(";"):
            name = self.token("parameter name")
            value: str | None = None
            if self.accept("="):
                self.skip_lws()
                if allow_quoted and self.peek() == '"':
                    start = self.pos
                    _, self.pos = read_quoted(self.text, self.pos, self.header)
                    value = self.text[start : self.pos]  # kept quoted: it serialises as it came
                else:
                    m = _PARAM_VALUE_RE.match(self.text, self.pos)
                    if m is None:
                        raise self.error(f"empty value for parameter {name!r}")
                    value = m.group()
                    self.pos = m.end()
            out.append((name, value))
        return tuple(out)


#: A quoted string's content: any character but '"' and '\\', or a backslash and the one it escapes.
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPED_RE = re.compile(r"\\(.)", re.DOTALL)
#: The characters that matter when splitting a comma list: quotes, angle brackets and commas.
_LIST_SPECIALS_RE = re.compile(r'[",<>]')


def read_quoted(text: str, pos: int, header: str | None = None) -> tuple[str, int]:
    """Read the quoted string starting at ``text[pos] == '"'``; returns (content, end)."""
    m = _QUOTED_RE.match(text, pos)
    if m is None:
        raise ParseError(f"unterminated quoted string in {text!r}", header=header)
    content = m.group(1)
    if "\\" in content:
        content = _ESCAPED_RE.sub(r"\1", content)
    return content, m.end()


def quote(text: str) -> str:
    """Serialise ``text`` as a quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_param(value: str | None) -> str | None:
    """A parameter value without its quotes, escapes undone (tokens unchanged)."""
    if value is not None and value.startswith('"'):
        return read_quoted(value, 0)[0]
    return value


def split_flat_params(text: str) -> Params | None:
    """``;a=b;c`` as (name, value) pairs, from a run a fast pattern matched as ``;`` followed by
    parameter characters, ``=`` and ``;``; None unless every item is ``name`` or ``name=value``
    with both parts non-empty (the caller then takes the full grammar, which says what is wrong).

    The fast patterns match such runs as one character class instead of a repeated group of
    name and value: the regex engine walks a class many times faster than it repeats a group.
    """
    if not text:
        return ()
    out: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        if not name:
            return None
        if not eq:
            out.append((name, None))
        elif not value or "=" in value:
            return None
        else:
            out.append((name, value))
    return tuple(out)


def format_params(params: Params) -> str:
    """``;name=value;flag`` as they serialise."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def param(params: Params, name: str) -> str | None:
    """The value of parameter ``name`` (case-insensitive), '' for a flag, None if absent."""
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return "" if v is None else v
    return None


def set_params(params: Params, changes: dict[str, str | None]) -> Params:
    """``params`` with each change applied in place (case-insensitive name), new ones appended."""
    out = list(params)
    for name, value in changes.items():
        lname = name.lower()
        for i, (k, _) in enumerate(out):
            if k.lower() == lname:
                out[i] = (k, value)
                break
        else:
            out.append((name, value))
    return tuple(out)


def has_param(params: Params, name: str) -> bool:
    """True if parameter ``name`` is present."""
    lname = name.lower()
    return any(k.lower() == lname for k, _ in params)


def split_commas(value: str, header: str | None = None) -> list[str]:
    """Split a header value on the commas that separate elements.

    Commas inside quoted strings and ``<...>`` do not count. Elements are stripped; an empty
    element (``a,,b``, a trailing comma) is an error, as the grammar allows none.
    """
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:  # tokens only (Allow, Supported...): every comma splits
        parts = [p.strip() for p in value.split(",")]
    else:
        parts = []
        start = 0
        angle = False
        m = _LIST_SPECIALS_RE.search(value)
        while m is not None:
            c = m.group()
            i = m.start()
            if c == '"':
                _, i = read_quoted(value, i, header)
                m = _LIST_SPECIALS_RE.search(value, i)
                continue
            if c == "<":
                angle = True
            elif c == ">":
                angle = False
            elif not angle:
                parts.append(value[start:i].strip())
                start = i + 1
            m = _LIST_SPECIALS_RE.search(value, i + 1)
        parts.append(value[start:].strip())
    if "" in parts:
        raise ParseError(f"empty element in comma-separated value {value!r}", header=header)
    return parts
