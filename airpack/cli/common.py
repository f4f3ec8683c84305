"""What every command shares: the typer app, option types, and the one place results and errors become
output and exit codes (``_run``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from airpack.cli_help import App
from airpack.cli_output import Verdict, run
from airpack.progress import Reporter
from airpack.tool import WheelSource

app = App(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
          help="Carry LLMs into air-gapped networks as one signed, verifiable bundle.")


T = TypeVar("T")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]

SpecArg = Annotated[Path, typer.Argument(help="The spec file (airpack.yaml).", show_default=False, metavar="SPEC")]

BundleArg = Annotated[Path, typer.Argument(help="The bundle folder.", show_default=False, metavar="BUNDLE")]

_PASSPHRASE_HELP = "The environment variable that holds the private key's passphrase."  # noqa: S105

PubKeyOpt = Annotated[list[Path], typer.Option("--key", metavar="FILE", help="Trusted public key (PEM), or a folder "
                                               "of *.pub (a trust store); repeatable.")]

NoToolOpt = Annotated[bool, typer.Option("--no-tool", help="Leave out tool/ (airpack's wheels and install.sh).")]

ToolIndexOpt = Annotated[str | None, typer.Option("--tool-index-url", metavar="URL", help="Index for the tool's "
                                                  "wheels (default: pip's own configuration).")]

ToolLinksOpt = Annotated[list[str] | None, typer.Option("--tool-find-links", metavar="DIR", help="Folder of wheels "
                                                        "for the tool instead of an index; repeatable.")]

PrefixOpt = Annotated[Path, typer.Option("--prefix", help="Install folder (weights, deploy files, state).")]

WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", metavar="MODE", help="kubernetes: how the pods get the model: image-volume (the model artifact "
    "by digest), init-copy (copied from the weights image, sha256 checked) or host-path (this node). Default: "
    "the spec's deploy.kubernetes.weights, else image-volume.")]


def _run(command: str, as_json: bool, fn: Callable[[], T], render: Callable[[T], None]) -> None:
    """Call ``fn`` and print its result or its error (:func:`airpack.cli_output.run`); exit with its code.

    ``fn`` returns a library result (``--json`` prints its ``to_dict()``; ``render`` gets the result itself) or
    a plain dict; a :class:`~airpack.cli_output.Verdict` may carry either."""

    def call() -> Any:
        try:
            value = fn()
        except Verdict as v:
            if as_json:
                raise Verdict(_data(v.data), v.error) from None
            raise
        return _data(value) if as_json else value

    code = run(command, as_json, call, render)
    if code:
        raise typer.Exit(code)


def _data(value: Any) -> Any:
    """What ``--json`` prints as ``data``: a library result's ``to_dict()``; a dict as it is."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def _trusted(keys: list[Path]) -> list[Any]:
    """The trusted public keys named by ``--key`` (files, and folders of *.pub: a trust store)."""
    from airpack.keys import load_trusted  # noqa: PLC0415

    return load_trusted(keys)


def _verified(bundle: Path, keys: list[Path], reporter: Reporter) -> Any:
    from airpack.verify import verify_bundle  # noqa: PLC0415

    return verify_bundle(bundle, _trusted(keys), reporter=reporter)


def _tool(no_tool: bool, index_url: str | None, links: list[str] | None) -> WheelSource | None:
    """Where the bundle's tool/ takes its wheels from (``--tool-index-url``, ``--tool-find-links``); None:
    ``--no-tool``."""
    return None if no_tool else WheelSource(index_url, tuple(links or ()))

