"""Commands on a bundle or its volumes, either side of the gap: verify, split, join, inspect; library:
:mod:`airpack.api`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from airpack import api
from airpack.cli.common import (
    BundleArg,
    JsonOpt,
    PubKeyOpt,
    _run,
    app,
)
from airpack.cli_output import note, result
from airpack.cli_output import reporter as _reporter
from airpack.errors import UsageError
from airpack.units import format_size, plural


@app.command()
def verify(bundle: BundleArg, key: PubKeyOpt, as_json: JsonOpt = False) -> None:
    """Prove every byte of the bundle is what the trusted key signed. Exit 3 when it is not."""

    def render(r: api.VerifyResult | api.VolumeVerifyResult) -> None:
        what = (f"volume {r.volume} of {r.count}, {plural(r.files, 'piece')}"
                if isinstance(r, api.VolumeVerifyResult) else plural(r.files, "file"))
        result(f"OK {r.name} {r.version}: {what}, {format_size(r.bytes)}, signed by {r.key_fingerprint}")
        for path, state in (r.attestations.items() if isinstance(r, api.VerifyResult) else ()):
            result(f"  {path}: {state}")

    def run() -> api.VerifyResult | api.VolumeVerifyResult:
        with _reporter(not as_json) as reporter:
            return api.verify(bundle, key, reporter=reporter)

    _run("verify", as_json, run, render)


@app.command()
def split(bundle: BundleArg, key: PubKeyOpt,
          out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder to write the volume folders into.")],
          size: Annotated[str | None, typer.Option("--size", metavar="SIZE", help="Capacity of one volume: 32GB (10^9), "
                                                   "4GiB, 700MB (default: one volume).")] = None,
          max_file: Annotated[str | None, typer.Option(
              "--max-file", metavar="SIZE", help="Largest file on the media, e.g. 4095MiB for FAT32.")] = None,
          volume: Annotated[int | None, typer.Option("--volume", help="Write only volume N (e.g. straight onto "
                                                     "the mounted medium).")] = None,
          base: Annotated[Path | None, typer.Option("--base", metavar="DIR", help="Delta: leave out what this previous bundle "
                                                    "(folder or its SHA256SUMS) already holds.")] = None,
          as_json: JsonOpt = False) -> None:
    """Split a verified bundle into volumes for removable media; each can be verified on its own."""
    def render(r: api.SplitResult) -> None:
        if r.from_base is not None:
            note(f"delta: {plural(len(r.from_base), 'file')} left to the base ('airpack join --base')")
        for v in r.volumes:
            result(f"volume {v.index} of {r.count}: {v.folder} ({plural(v.pieces, 'piece')}, "
                   f"{format_size(v.bytes)})")

    def run() -> api.SplitResult:
        with _reporter(not as_json) as reporter:
            return api.split(bundle, key, out, size=size, max_file=max_file, only=volume, base=base,
                             reporter=reporter)

    _run("split", as_json, run, render)


@app.command()
def join(volumes: Annotated[list[Path], typer.Argument(help="Volume folders (any order; more in later runs).",
                                                       show_default=False, metavar="VOLUME")],
         key: PubKeyOpt,
         out: Annotated[Path, typer.Option("--out", metavar="DIR", help="The bundle folder to assemble.")],
         base: Annotated[Path | None, typer.Option("--base", metavar="DIR", help="For a delta split: the previous "
                                                   "bundle folder, source of what the volumes leave out.")] = None,
         as_json: JsonOpt = False) -> None:
    """Join volumes into the bundle, checking every piece as it is copied; resumable, one medium at a time."""
    def render(r: api.JoinResult) -> None:
        if r.complete:
            result(f"complete: {r.out} (now 'airpack install' it)")
        else:
            needed = ", ".join(map(str, r.missing)) or "the rest of a volume already started"
            result(f"have volume(s) {', '.join(map(str, r.volumes)) or 'none yet'} of {r.count}; "
                   f"{plural(r.missing_files, 'file')} incomplete; still needed: {needed} (rerun "
                   "'airpack join' with them)")

    def run() -> api.JoinResult:
        with _reporter(not as_json) as reporter:
            return api.join(volumes, key, out, base=base, reporter=reporter)

    _run("join", as_json, run, render)


@app.command()
def inspect(bundle: BundleArg, show_diff: Annotated[bool, typer.Option(
        "--show-diff", help="Show how install changes the deploy files (host parameters); needs --key.")] = False,
            key: Annotated[list[Path] | None, typer.Option("--key", help="Trusted public key (PEM): the deploy "
                                                           "files are rendered only once signed.")] = None,
            as_json: JsonOpt = False) -> None:
    """Show what a bundle says it contains (unverified: run 'airpack verify' to prove it)."""

    def describe() -> api.InspectResult:
        if show_diff and not key:
            raise UsageError("--show-diff renders the bundle's deploy files: give --key to check them first")
        return api.inspect(bundle, key or [], diff=show_diff or as_json)

    def render(d: api.InspectResult) -> None:
        result(f"{d.name} {d.version} (created {d.created}, airpack {d.airpack_version}, "
               f"format {d.format_version}) — {'signed' if d.signed else 'UNSIGNED'}, not verified")
        m = d.model
        result(f"model: {m.get('source')} {m.get('repo') or m.get('path')} {m.get('commit') or ''}".rstrip())
        for f in m["files"]:
            result(f"  {format_size(f['size']):>9}  {f['path']}")
        for i in d.images:
            result(f"image: {i.get('ref')} {i.get('digest')} {i.get('platform', '')}")
        for k, v in sorted(d.kinds.items()):
            result(f"{k}: {plural(v['files'], 'file')}, {format_size(v['bytes'])}")
        for path, info in d.attestations.items():
            result(f"{path}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        if d.volume is not None:
            from airpack.delta import volume_lines  # noqa: PLC0415

            result("\n".join(volume_lines(dict(d.volume))))
        for target, diff in sorted((d.deploy_diff or {}).items()):
            result(f"--- {target}: as built → as installed with defaults (host network, API key)")
            result(diff.rstrip() or "(no change)")

    _run("inspect", as_json, describe, render)

