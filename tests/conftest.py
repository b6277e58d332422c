"""Shared test helpers: where ../shared lives."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RFC4475 = SHARED / "conformance" / "rfc4475"


def rfc4475_rows() -> list[dict[str, str]]:
    """The rows of expected.tsv (read at collection time; a missing ../shared fails loudly)."""
    lines = [line for line in (RFC4475 / "expected.tsv").read_text().splitlines() if not line.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line.strip()]
