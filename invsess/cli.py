"""The ``invsess`` command line (click)."""

from __future__ import annotations

import click

from invsess import __version__
from invsess.demo import run_demo


@click.group()
@click.version_option(__version__, prog_name="invsess")
def main() -> None:
    """invsess: SIP INVITE sessions and dialogs, built to be debugged."""


@main.command()
def demo() -> None:
    """Show the memory model: the right release order, then the wrong one caught."""
    leaked = run_demo(click.echo)
    if leaked:
        raise SystemExit(1)
