"""The command line: the only package that imports typer. Each command parses options, calls one library
function, and renders the result as text (results on stdout, progress and diagnostics on stderr) or ``--json``
(stdout). Errors become exit codes in exactly one place, :func:`airpack.cli.common._run`.

Commands live by the side of the gap they serve: :mod:`~airpack.cli.build_side` (keygen, lock, build, sign,
plan), :mod:`~airpack.cli.bundles` (verify, split, join, inspect) and :mod:`~airpack.cli.far_side` (doctor,
load, push, install, status, uninstall, rollback).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from airpack import __version__
from airpack.cli import build_side, bundles, far_side, render_cmd  # noqa: F401 - registers the commands on ``app``
from airpack.cli.common import app
from airpack.cli_output import err
from airpack.errors import EXIT_ERROR

__all__ = ["app", "main"]

@app.command()
def version() -> None:
    """Print airpack's version."""
    sys.stdout.write(f"airpack {__version__}\n")


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"airpack {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                 help="Print airpack's version and exit.")] = False) -> None:
    """Carry LLMs into air-gapped networks as one signed, verifiable bundle.

    Results go to stdout; progress, warnings and errors to stderr; --json puts one JSON document on stdout.
    """


def main() -> None:
    """Console entry point."""
    if os.environ.get("AIRPACK_DEBUG"):
        app()
        return
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback for the user
        err.print(f"internal error: {type(exc).__name__}: {exc} (set AIRPACK_DEBUG=1 for the traceback)",
                  markup=False, style="bold red")
        sys.exit(EXIT_ERROR)

