"""The header list of one message: raw lines in order, typed values parsed on first read.

Owns the lazy parsing rule: a header value is parsed the first time it is read, through the
parser :data:`~invsess.sip.headers.HEADER_SPECS` names for it, and the result is cached (per line,
and per name asked for); any change to the list drops the per-name cache. Never parses a header
nobody asked for, and never parses an unknown header at all.

One of the hot modules that the compiled build compiles (``docs/performance-parsing.md``): plain
classes with typed attributes, no pool blocks (messages are; they live in ``message.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from invsess.sip.errors import LocalProtocolError, ParseError
from invsess.sip.grammar import is_token, split_commas
from invsess.sip.headers import HEADER_SPECS, REPEATABLE_UNSPLIT, HeaderSpec, canonical_name

#: The parse cache of a line nobody has read yet (None is a value a parser never returns, but a
#: distinct object says "not parsed" without doubt).
UNPARSED: Final[Any] = object()

#: Per-name cache keys of "the first element of a list header" (no string built per read).
_FIRST_KEYS: Final = {key: "first:" + key for key in HEADER_SPECS}


class HeaderField:
    """One header line: the name as written, its canonical name, the raw value, its parse cache.

    A plain record (not attrs): the parser makes one per header line of every message, and a
    plain class with slots is what the compiled build turns into a C struct.
    """

    __slots__ = ("key", "name", "parsed", "value")

    def __init__(self, name: str, key: str, value: str, parsed: Any = UNPARSED) -> None:
        self.name = name
        self.key = key
        self.value = value
        self.parsed = parsed

    def __repr__(self) -> str:
        parsed = "<unparsed>" if self.parsed is UNPARSED else repr(self.parsed)
        return f"HeaderField(name={self.name!r}, key={self.key!r}, value={self.value!r}, parsed={parsed})"


class Headers:
    """The ordered header list of one message, with lazy typed access.

    Names are case-insensitive and compact forms are equivalent to full names. Raw access
    (``get``, ``get_all``) never parses; ``parsed`` parses on first use, caches, and raises
    :class:`ParseError` for an invalid value or for a single-valued header that appears twice.
    """

    __slots__ = ("_cache", "_dirty", "_fields")

    def __init__(self, fields: list[HeaderField] | None = None) -> None:
        self._fields: list[HeaderField] = fields if fields is not None else []
        self._dirty = False
        self._cache: dict[str, Any] = {}  # name asked for -> typed value; cleared on change

    @property
    def dirty(self) -> bool:
        """True once the header list was modified (the message then serialises canonically)."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(f.key, f.value) for f in self._fields])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._first(canonical_name(name)) is not None

    def __repr__(self) -> str:
        return f"Headers({[(f.key, f.value) for f in self._fields]!r})"

    @property
    def fields(self) -> tuple[HeaderField, ...]:
        """The header lines in order (read-only view)."""
        return tuple(self._fields)

    def _first(self, key: str) -> HeaderField | None:
        for f in self._fields:
            if f.key == key:
                return f
        return None

    def get(self, name: str) -> str | None:
        """The raw value of the first ``name`` header, or None."""
        f = self._first(canonical_name(name))
        return None if f is None else f.value

    def get_all(self, name: str) -> list[str]:
        """The raw values of every ``name`` header line, in order."""
        key = canonical_name(name)
        return [f.value for f in self._fields if f.key == key]

    def count(self, name: str) -> int:
        """How many lines carry ``name``."""
        key = canonical_name(name)
        n = 0
        for f in self._fields:
            if f.key == key:
                n += 1
        return n

    def parsed(self, name: str) -> Any:
        """The typed value: a list for list headers, a single value (or None) otherwise.

        Lists are returned as fresh copies only when built; treat them as read-only.
        """
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        key = name
        spec = HEADER_SPECS.get(key)
        if spec is None:
            key = canonical_name(name)
            spec = HEADER_SPECS.get(key)
            if spec is None:
                raise LocalProtocolError(f"no parser for header {key!r}; use get()/get_all()")
        value = _parse(key, spec, [f for f in self._fields if f.key == key])
        if value is not None:
            self._cache[name] = value
        return value

    def first(self, name: str) -> Any:
        """The first element of a list header (the top Via), parsing nothing after it."""
        key = name
        spec = HEADER_SPECS.get(key)
        if spec is None:
            key = canonical_name(name)
            spec = HEADER_SPECS.get(key)
        if spec is None or not spec.multi:
            raise LocalProtocolError(f"{key!r} is not a list header")
        cache_key = _FIRST_KEYS[key]
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        field = self._first(key)
        if field is None:
            return None
        if field.parsed is not UNPARSED:
            value = field.parsed[0]
        else:
            text = field.value
            value = spec.parse(split_commas(text, key)[0] if "," in text else text, key)
        self._cache[cache_key] = value
        return value

    def parse_all(self) -> None:
        """Parse every known header now (raises the first :class:`ParseError`, in header order)."""
        groups: dict[str, list[HeaderField]] = {}
        for f in self._fields:
            group = groups.get(f.key)
            if group is None:
                groups[f.key] = [f]
            else:
                group.append(f)
        cache = self._cache
        for key, fields in groups.items():
            spec = HEADER_SPECS.get(key)
            if spec is not None and key not in cache:
                value = _parse(key, spec, fields)
                if value is not None:
                    cache[key] = value

    # -- modification ----------------------------------------------------------------------

    def _field(self, name: str, value: object) -> HeaderField:
        key = canonical_name(name)
        if not is_token(key):
            raise LocalProtocolError(f"invalid header name {name!r}")
        text = str(value)
        if "\r" in text or "\n" in text:
            raise LocalProtocolError(f"header {key} value contains a line break")
        field = HeaderField(key, key, text)
        if not isinstance(value, str):
            spec = HEADER_SPECS.get(key)
            if spec is not None:
                field.parsed = [value] if (spec.multi or key in REPEATABLE_UNSPLIT) else value
        return field

    def add(self, name: str, value: object) -> None:
        """Append a header line (a string, or a typed value serialised with ``str``)."""
        self._fields.append(self._field(name, value))
        self.dirty = True

    def insert(self, index: int, name: str, value: object) -> None:
        """Insert a header line at ``index`` (0: before all others, as a new top Via)."""
        self._fields.insert(index, self._field(name, value))
        self.dirty = True

    def prepend(self, name: str, value: object) -> None:
        """Insert a header line before the first line of the same name (or at the top)."""
        key = canonical_name(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self.insert(i, name, value)
                return
        self.insert(0, name, value)

    def set(self, name: str, value: object) -> None:
        """Replace every ``name`` line with one line, where the first one stood."""
        key = canonical_name(name)
        new = self._field(name, value)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields[i] = new
                self._fields = [g for j, g in enumerate(self._fields) if j <= i or g.key != key]
                break
        else:
            self._fields.append(new)
        self.dirty = True

    def remove(self, name: str) -> int:
        """Remove every ``name`` line; returns how many were removed."""
        key = canonical_name(name)
        before = len(self._fields)
        self._fields = [f for f in self._fields if f.key != key]
        removed = before - len(self._fields)
        if removed:
            self.dirty = True
        return removed

    def remove_first(self, name: str) -> None:
        """Remove the first element of a list header (e.g. the top Via), or its whole line."""
        key = canonical_name(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                parts = split_commas(f.value, key)
                if len(parts) == 1:
                    del self._fields[i]
                else:
                    self._fields[i] = HeaderField(f.name, key, ", ".join(parts[1:]))
                self.dirty = True
                return

    def copy(self) -> Headers:
        """An independent copy (parse caches shared: parsed values are immutable)."""
        return Headers([HeaderField(f.name, f.key, f.value, f.parsed) for f in self._fields])

    def serialize(self) -> str:
        """``Name: value\\r\\n`` lines with canonical names."""
        return "".join([f"{f.key}: {f.value}\r\n" for f in self._fields])


def _parse(key: str, spec: HeaderSpec, fields: list[HeaderField]) -> Any:
    """The typed value of the lines ``fields`` (all named ``key``), parsing each line once."""
    parse = spec.parse
    if spec.multi or key in REPEATABLE_UNSPLIT:
        out: list[Any] = []
        for f in fields:
            parsed = f.parsed
            if parsed is UNPARSED:
                text = f.value
                if not spec.multi:
                    parsed = [parse(text, key)]
                elif "," in text:
                    parsed = [parse(part, key) for part in split_commas(text, key)]
                else:
                    parsed = [parse(text.strip(), key)]
                f.parsed = parsed
            out.extend(parsed)
        return out
    if not fields:
        return None
    f = fields[0]
    if len(fields) > 1 and len({g.value.strip() for g in fields}) > 1:
        raise ParseError(f"{key} appears {len(fields)} times with different values", header=key)
    if f.parsed is UNPARSED:
        f.parsed = parse(f.value, key)
    return f.parsed
