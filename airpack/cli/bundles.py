"""Commands on a bundle or its volumes, either side of the gap: verify, split, join, inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from airpack.cli.common import (
    BundleArg,
    JsonOpt,
    PubKeyOpt,
    _run,
    _trusted,
    app,
)
from airpack.cli_output import note, result
from airpack.cli_output import reporter as _reporter
from airpack.errors import UsageError
from airpack.units import format_size, plural


def _verify_impl(bundle: Path, keys: list[Path], progress: bool) -> dict[str, Any]:
    from airpack.verify import verify_bundle  # noqa: PLC0415
    from airpack.volumes import is_volume, verify_volume  # noqa: PLC0415

    pubs = _trusted(keys)
    if is_volume(bundle):
        with _reporter(progress) as reporter:
            vr = verify_volume(bundle, pubs, reporter=reporter)
        return {"bundle": str(bundle), "name": vr.name, "version": vr.version, "volume": vr.index,
                "count": vr.count, "key_fingerprint": vr.key_fingerprint, "files": vr.pieces, "bytes": vr.bytes}
    with _reporter(progress) as reporter:
        vb = verify_bundle(bundle, pubs, reporter=reporter)
    return {"bundle": str(bundle), "name": vb.manifest.name, "version": vb.manifest.version,
            "key_fingerprint": vb.key_fingerprint, "sums_sha256": vb.sums_sha256,
            "files": len(vb.manifest.files) + 1, "bytes": vb.total_bytes,
            "attestations": dict(vb.attestations)}


@app.command()
def verify(bundle: BundleArg, key: PubKeyOpt, as_json: JsonOpt = False) -> None:
    """Prove every byte of the bundle is what the trusted key signed. Exit 3 when it is not."""

    def render(r: dict[str, Any]) -> None:
        what = (f"volume {r['volume']} of {r['count']}, {plural(r['files'], 'piece')}" if "volume" in r
                else plural(r["files"], "file"))
        result(f"OK {r['name']} {r['version']}: {what}, {format_size(r['bytes'])}, signed by {r['key_fingerprint']}")
        for path, state in r.get("attestations", {}).items():
            result(f"  {path}: {state}")

    _run("verify", as_json, lambda: _verify_impl(bundle, key, not as_json), render)


def _split_impl(bundle: Path, keys: list[Path], out: Path, size: str | None, max_file: str | None,
                only: int | None, progress: bool, base: Path | None = None) -> dict[str, Any]:
    from airpack.delta import split_with_base  # noqa: PLC0415
    from airpack.volume_format import parse_size  # noqa: PLC0415

    pubs = _trusted(keys)
    capacity, cap = parse_size(size) if size else 2**62, parse_size(max_file) if max_file else None
    with _reporter(progress) as reporter:
        vols = split_with_base(bundle, pubs, out, capacity, base=base, max_file=cap, only=only,
                               reporter=reporter)
    written = [v for v in vols if only is None or v.index == only]
    return {"out": str(out), "count": len(vols), "fromBase": list(vols[0].base.files) if vols[0].base else None,
            "volumes": [{"index": v.index, "folder": str(out / v.folder_name), "pieces": len(v.pieces),
                         "bytes": sum(p.length for p in v.pieces)} for v in written]}


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
    def render(r: dict[str, Any]) -> None:
        if r["fromBase"] is not None:
            note(f"delta: {plural(len(r['fromBase']), 'file')} left to the base ('airpack join --base')")
        for v in r["volumes"]:
            result(f"volume {v['index']} of {r['count']}: {v['folder']} ({plural(v['pieces'], 'piece')}, "
                   f"{format_size(v['bytes'])})")

    _run("split", as_json, lambda: _split_impl(bundle, key, out, size, max_file, volume, not as_json, base), render)


def _join_impl(volumes: list[Path], keys: list[Path], out: Path, progress: bool,
               base: Path | None = None) -> dict[str, Any]:
    from airpack.delta import join_with_base  # noqa: PLC0415

    pubs = _trusted(keys)
    with _reporter(progress) as reporter:
        r = join_with_base(volumes, pubs, out, base=base, reporter=reporter)
    return {"out": str(r.out), "complete": r.complete, "volumes": list(r.volumes_seen), "count": r.count,
            "missing": list(r.missing), "missing_files": r.missing_files, "added_bytes": r.added_bytes}


@app.command()
def join(volumes: Annotated[list[Path], typer.Argument(help="Volume folders (any order; more in later runs).",
                                                       show_default=False, metavar="VOLUME")],
         key: PubKeyOpt,
         out: Annotated[Path, typer.Option("--out", metavar="DIR", help="The bundle folder to assemble.")],
         base: Annotated[Path | None, typer.Option("--base", metavar="DIR", help="For a delta split: the previous "
                                                   "bundle folder, source of what the volumes leave out.")] = None,
         as_json: JsonOpt = False) -> None:
    """Join volumes into the bundle, checking every piece as it is copied; resumable, one medium at a time."""
    def render(r: dict[str, Any]) -> None:
        if r["complete"]:
            result(f"complete: {r['out']} (now 'airpack install' it)")
        else:
            needed = ", ".join(map(str, r["missing"])) or "the rest of a volume already started"
            result(f"have volume(s) {', '.join(map(str, r['volumes'])) or 'none yet'} of {r['count']}; "
                   f"{plural(r['missing_files'], 'file')} incomplete; still needed: {needed} (rerun "
                   "'airpack join' with them)")

    _run("join", as_json, lambda: _join_impl(volumes, key, out, not as_json, base), render)


@app.command()
def inspect(bundle: BundleArg, show_diff: Annotated[bool, typer.Option(
        "--show-diff", help="Show how install changes the deploy files (host parameters); needs --key.")] = False,
            key: Annotated[list[Path] | None, typer.Option("--key", help="Trusted public key (PEM): the deploy "
                                                           "files are rendered only once signed.")] = None,
            as_json: JsonOpt = False) -> None:
    """Show what a bundle says it contains (unverified: run 'airpack verify' to prove it)."""
    from airpack.describe import describe_bundle  # noqa: PLC0415

    def describe() -> dict[str, Any]:
        if show_diff and not key:
            raise UsageError("--show-diff renders the bundle's deploy files: give --key to check them first")
        d = describe_bundle(bundle, _trusted(key or []), diff=show_diff or as_json)
        from airpack.delta import describe_volume  # noqa: PLC0415

        d.update({"volume": describe_volume(bundle)} if (bundle / "airpack-volume.json").is_file() else {})
        return d

    def render(d: dict[str, Any]) -> None:
        result(f"{d['name']} {d['version']} (created {d['created']}, airpack {d['airpackVersion']}, "
               f"format {d['formatVersion']}) — {'signed' if d['signed'] else 'UNSIGNED'}, not verified")
        m = d["model"]
        result(f"model: {m.get('source')} {m.get('repo') or m.get('path')} {m.get('commit') or ''}".rstrip())
        for f in m["files"]:
            result(f"  {format_size(f['size']):>9}  {f['path']}")
        for i in d["images"]:
            result(f"image: {i.get('ref')} {i.get('digest')} {i.get('platform', '')}")
        for k, v in sorted(d["kinds"].items()):
            result(f"{k}: {plural(v['files'], 'file')}, {format_size(v['bytes'])}")
        for path, info in d.get("attestations", {}).items():
            result(f"{path}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        if "volume" in d:
            from airpack.delta import volume_lines  # noqa: PLC0415

            result("\n".join(volume_lines(d["volume"])))
        for target, diff in sorted(d.get("deployDiff", {}).items()):
            result(f"--- {target}: as built → as installed with defaults (host network, API key)")
            result(diff.rstrip() or "(no change)")

    _run("inspect", as_json, describe, render)

