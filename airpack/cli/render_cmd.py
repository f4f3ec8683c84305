"""``airpack render``: verify a bundle, then write the deploy files one install target would write, rendered for
a host, into a new folder (library: :mod:`airpack.install.render_files`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from airpack.cli.common import BundleArg, JsonOpt, PubKeyOpt, WeightsOpt, _run, _verified, app
from airpack.cli_output import live, result

if TYPE_CHECKING:
    from airpack.install.render_files import RenderOptions, RenderResult


def _render_impl(bundle: Path, keys: list[Path], options: RenderOptions, progress: bool) -> RenderResult:
    from airpack.install.render_files import render as render_files  # noqa: PLC0415

    with live(progress) as (reporter, event):
        event("verifying")
        vb = _verified(bundle, keys, reporter)
        return render_files(vb, options)


def _text(r: RenderResult) -> None:
    result(f"{r.name} {r.version}: {r.target} files written to {r.out} (for a host where it is installed at "
           f"{r.prefix})")
    result("\n".join(f"  {f}" for f in r.files))
    if r.target == "helm":
        result("API key: the Secret values.yaml names in apiKey.secretName (none is written here)"
               if r.api_key_file else "no API key (apiKey.secretName is empty)")
    elif r.api_key_file:
        result(f"API key: read from {r.api_key_file} on the host (none is written here)")


@app.command()
def render(
    bundle: BundleArg, key: PubKeyOpt,
    target: Annotated[str, typer.Option("--target", help="compose, kubernetes, helm (a chart of the kubernetes files) or systemd.")],
    out: Annotated[Path, typer.Option("--out", help="A new or empty folder for the files.")],
    registry: Annotated[str | None, typer.Option("--registry", metavar="REGISTRY", help="kubernetes: "
                                                 "HOST[:PORT][/PREFIX] that 'airpack push' put the images in.")] = None,
    port: Annotated[int, typer.Option("--port", help="Port of the endpoint.")] = 8000,
    bind: Annotated[str, typer.Option("--bind", help="Address the endpoint listens on.")] = "127.0.0.1",
    network: Annotated[str, typer.Option("--network", help="host (the engine binds --bind:--port itself) or "
                                         "bridge (published port).")] = "host",
    no_api_key: Annotated[bool, typer.Option("--no-api-key", help="Files for an endpoint without an API key.")] = False,
    prefix: Annotated[Path | None, typer.Option("--prefix", help="Where the bundle is installed on the host (the "
                                                "files name the weights and the API key under it). Default: "
                                                "/opt/airpack/NAME.")] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", min=0, max=64, help="GPUs per engine (per replica on "
                                             "Kubernetes). Default: the spec's target.gpus.")] = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the bundle, then write the deploy files 'airpack install --target T' would write, for GitOps.

    Nothing else happens: no engine, no install prefix, no network. Exit 2 when --out is not a new or empty
    folder or a flag does not apply to the target, 3 when the bundle is not what was signed.
    """
    from airpack.install.render_files import RenderOptions  # noqa: PLC0415

    def run() -> RenderResult:
        options = RenderOptions(target=target, out=out, port=port, bind=bind, network=network, registry=registry,
                                api_key=not no_api_key, prefix=prefix, gpus=gpus, weights=weights)
        return _render_impl(bundle, key, options, not as_json)

    _run("render", as_json, run, _text)
