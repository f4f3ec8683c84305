"""The command line: the only module that imports typer. Each command parses options, calls one library
function, and renders the result as text (stderr for status) or ``--json`` (stdout). Errors become exit
codes in exactly one place, ``_run``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from airpack import __version__
from airpack.cli_help import App
from airpack.cli_output import Verdict, err, live, note, print_checks, result, run
from airpack.cli_output import reporter as _reporter
from airpack.errors import EXIT_ERROR, UsageError, VerificationError
from airpack.progress import Reporter
from airpack.units import format_size, plural

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


def _run(command: str, as_json: bool, fn: Callable[[], T], render: Callable[[T], None]) -> None:
    """Call ``fn`` and print its result or its error (:func:`airpack.cli_output.run`); exit with its code."""
    code = run(command, as_json, fn, render)
    if code:
        raise typer.Exit(code)


def _cache() -> Path:
    from airpack.cache import cache_dir  # noqa: PLC0415

    return cache_dir()


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder for NAME.key and NAME.pub.")],
    name: Annotated[str, typer.Option("--name", help="Base name of the key files.")] = "airpack",
    algorithm: Annotated[str, typer.Option("--algorithm", help="ecdsa-p256 (default) or ed25519.")] = "ecdsa-p256",
    passphrase_env: Annotated[str | None, typer.Option("--passphrase-env", help="Encrypt the key with the "
                                                       "passphrase in this environment variable.")] = None,
    pkcs11: Annotated[str | None, typer.Option("--pkcs11", help="Make the pair inside this PKCS#11 token (a "
                                               "pkcs11: URI); only NAME.pub is written.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a signing key pair. Keep the .key offline; carry the .pub to the far side out of band."""
    from airpack.keys import make_key_pair  # noqa: PLC0415

    def render(kp: dict[str, Any]) -> None:
        result(f"private key: {kp['private_key']} {kp['where']}\npublic key:  {kp['public_key']}\n"
               f"fingerprint: {kp['fingerprint']}")

    _run("keygen", as_json, lambda: make_key_pair(out, name=name, algorithm=algorithm, passphrase_env=passphrase_env,
                                                  pkcs11=pkcs11), render)


def _tool(no_tool: bool, index_url: str | None, links: list[str] | None) -> Any:
    from airpack.tool import WheelSource  # noqa: PLC0415

    return None if no_tool else WheelSource(index_url, tuple(links or ()))


def _lock_impl(spec_path: Path, out: Path | None, tool: Any = None) -> dict[str, Any]:
    from airpack.lock import default_lock_path, write_lock  # noqa: PLC0415
    from airpack.resolve import resolve  # noqa: PLC0415
    from airpack.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    lock = resolve(spec, cache_dir=_cache(), tool=tool)
    path = out or default_lock_path(spec_path)
    write_lock(lock, path)
    return {"lock": str(path), "files": len(lock.model.files), "bytes": lock.model.total_size,
            "excluded": [{"path": e.path, "reason": e.reason} for e in lock.model.excluded],
            "images": [i.to_dict() for i in lock.images], "checks": list(lock.checks)}


@app.command()
def lock(spec: SpecArg, out: Annotated[Path | None, typer.Option("-o", "--out", metavar="FILE", help="Lock file to write "
                                                                  "(default: SPEC.lock beside the spec).")] = None,
         no_tool: NoToolOpt = False, tool_index_url: ToolIndexOpt = None, tool_find_links: ToolLinksOpt = None,
         as_json: JsonOpt = False) -> None:
    """Pin every file (size, sha256), commit and image digest, and check the model fits the target."""

    def render(r: dict[str, Any]) -> None:
        result(f"locked {plural(r['files'], 'file')} ({format_size(r['bytes'])}) → {r['lock']}")
        for e in r["excluded"]:
            result(f"  left out {e['path']}: {e['reason']}")
        for c in r["checks"]:
            if c["status"] != "pass":
                note(f"  {c['status']}: {c['name']}: {c['message']}")

    _run("lock", as_json, lambda: _lock_impl(spec, out, _tool(no_tool, tool_index_url, tool_find_links)), render)


def _build_impl(spec_path: Path, out: Path, key_path: Path | None, passphrase_env: str | None, force: bool,
                lock_path: Path | None, progress: bool, tool: Any = None) -> dict[str, Any]:
    from airpack.bundle import build_bundle  # noqa: PLC0415
    from airpack.keys import load_signing_key  # noqa: PLC0415
    from airpack.lock import check_lock_matches, default_lock_path, read_lock, write_lock  # noqa: PLC0415
    from airpack.resolve import resolve  # noqa: PLC0415
    from airpack.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    key = load_signing_key(key_path, passphrase_env=passphrase_env) if key_path else None
    lp = lock_path or default_lock_path(spec_path)
    if lp.exists():
        lk = read_lock(lp)
        check_lock_matches(lk, spec, lp)
        tool = tool if lk.tool is not None else None  # a lock made --no-tool (or before tool/): none
    else:
        lk = resolve(spec, cache_dir=_cache(), tool=tool)
        write_lock(lk, lp)
    with _reporter(progress) as reporter:
        result = build_bundle(spec, lk, out, key=key, cache_dir=_cache(), force=force, reporter=reporter, tool=tool)
    return {"bundle": str(result.path), "name": result.manifest.name, "version": result.manifest.version,
            "files": len(result.manifest.files) + 1, "bytes": result.total_bytes,  # as verify counts
            "sums_sha256": result.sums_sha256, "signed_by": result.signed_by, "tool": tool is not None}


@app.command()
def build(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Where the bundle folder appears when complete.")],
    key: Annotated[Path | None, typer.Option("--key", metavar="FILE", help="Sign at once with this private key "
                                             "(PEM file or pkcs11: URI).")] = None,
    passphrase_env: Annotated[str | None, typer.Option("--passphrase-env", metavar="VAR", help=_PASSPHRASE_HELP)] = None,
    lock_file: Annotated[Path | None, typer.Option("--lock", metavar="FILE", help="Lock file (default: SPEC.lock beside the spec).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle at --out.")] = False,
    no_tool: NoToolOpt = False, tool_index_url: ToolIndexOpt = None, tool_find_links: ToolLinksOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch everything the lock pins into a bundle folder (locking first when there is no lock)."""

    def render(r: dict[str, Any]) -> None:
        signed = f"signed by {r['signed_by']}" if r["signed_by"] else "UNSIGNED (run 'airpack sign')"
        result(f"built {r['bundle']}: {r['name']} {r['version']}, {plural(r['files'], 'file')}, "
               f"{format_size(r['bytes'])}, {signed}" + ("" if r["tool"] else ", without tool/"))

    _run("build", as_json, lambda: _build_impl(spec, out, key, passphrase_env, force, lock_file, not as_json,
                                                _tool(no_tool, tool_index_url, tool_find_links)), render)


def _sign_impl(bundle: Path, key_path: Path, passphrase_env: str | None, force: bool, pubs: list[Path],
               progress: bool) -> dict[str, Any]:
    from airpack.bundle_sign import sign_bundle  # noqa: PLC0415
    from airpack.keys import load_signing_key  # noqa: PLC0415

    key = load_signing_key(key_path, passphrase_env=passphrase_env)
    with _reporter(progress) as reporter:
        r = sign_bundle(bundle, key, force=force, known=_trusted(pubs), reporter=reporter)
    return {"bundle": str(r.bundle), "signed_by": r.key_fingerprint, "sums_sha256": r.sums_sha256,
            "replaced": r.replaced}


@app.command()
def sign(bundle: BundleArg, key: Annotated[Path, typer.Option("--key", metavar="FILE", help="Private key (PEM file "
                                                               "or pkcs11: URI).")],
         passphrase_env: Annotated[str | None, typer.Option("--passphrase-env", metavar="VAR", help=_PASSPHRASE_HELP)] = None,
         force: Annotated[bool, typer.Option("--force", help="Replace an existing signature.")] = False,
         pub: Annotated[list[Path] | None, typer.Option("--pub", metavar="FILE", help="Public key (PEM) to name the "
                                                        "signer of an existing signature by; repeatable.")] = None,
         as_json: JsonOpt = False) -> None:
    """Sign a built bundle (after checking every file against its SHA256SUMS)."""
    _run("sign", as_json, lambda: _sign_impl(bundle, key, passphrase_env, force, pub or [], not as_json),
         lambda r: result(f"signed {r['bundle']} with {r['signed_by']}" + (
             f" (replaced a signature by {r['replaced']})" if r["replaced"] else "")))


def _trusted(keys: list[Path]) -> list[Any]:
    """The trusted public keys named by ``--key`` (files, and folders of *.pub: a trust store)."""
    from airpack.keys import load_trusted  # noqa: PLC0415

    return load_trusted(keys)


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


# ---- install side: doctor, load, push, install, status, uninstall (library: airpack.install) -------------

PrefixOpt = Annotated[Path, typer.Option("--prefix", help="Install folder (weights, deploy files, state).")]


def _verified(bundle: Path, keys: list[Path], reporter: Reporter) -> Any:
    from airpack.verify import verify_bundle  # noqa: PLC0415

    return verify_bundle(bundle, _trusted(keys), reporter=reporter)


def _doctor_impl(bundle: Path | None, prefix: Path | None) -> dict[str, Any]:
    from airpack.describe import unverified_manifest  # noqa: PLC0415
    from airpack.errors import InstallError  # noqa: PLC0415
    from airpack.install.doctor import doctor as run_doctor  # noqa: PLC0415

    manifest = unverified_manifest(bundle) if bundle is not None else None  # capped, no link, no FIFO
    where = prefix or Path("/opt/airpack") / (manifest.name if manifest else "")
    report = run_doctor(where, manifest, bundle).to_dict()
    if not report["ok"]:  # exit 1 when a check fails (0 when all pass or only warn): the report still prints
        failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if c["status"] == "fail"]
        raise Verdict(report, InstallError(f"{len(failed)} check(s) failed: " + "; ".join(failed)))
    return report


@app.command()
def doctor(
    bundle: Annotated[Path | None, typer.Argument(help="Check the host against this bundle (read, not "
                                                  "verified); without it, the host alone.")] = None,
    prefix: Annotated[Path | None, typer.Option("--prefix", help="Where it would be installed "
                                                "(free space is checked there).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Can this host run the bundle? OS, Docker, NVIDIA driver, GPUs and VRAM, container runtime, disk."""
    _run("doctor", as_json, lambda: _doctor_impl(bundle, prefix), lambda r: print_checks(r["checks"]))


def _load_impl(bundle: Path, keys: list[Path], progress: bool) -> dict[str, Any]:
    from airpack.install.engine import connect  # noqa: PLC0415
    from airpack.install.images import load_images  # noqa: PLC0415

    with live(progress) as (reporter, _):
        vb = _verified(bundle, keys, reporter)
        tags = load_images(vb, connect(), reporter)
    return {"bundle": str(bundle), "name": vb.manifest.name, "version": vb.manifest.version, "tags": tags}


@app.command()
def load(bundle: BundleArg, key: PubKeyOpt, as_json: JsonOpt = False) -> None:
    """Verify the bundle, then load its images into the local Docker engine."""
    _run("load", as_json, lambda: _load_impl(bundle, key, not as_json),
         lambda r: result("loaded " + (", ".join(r["tags"]) or "no images")))


def _push_impl(bundle: Path, keys: list[Path], registry: str, progress: bool) -> dict[str, Any]:
    from airpack.install.images import push_images  # noqa: PLC0415

    with live(progress) as (reporter, _):
        vb = _verified(bundle, keys, reporter)
        refs = push_images(vb, registry, reporter)
    return {"bundle": str(bundle), "registry": registry, "images": refs}


@app.command()
def push(bundle: BundleArg, key: PubKeyOpt,
         registry: Annotated[str, typer.Option("--registry", metavar="REGISTRY", help="HOST[:PORT][/PREFIX] of the internal registry.")],
         as_json: JsonOpt = False) -> None:
    """Verify the bundle, then push its images, byte for byte, to an internal registry."""
    _run("push", as_json, lambda: _push_impl(bundle, key, registry, not as_json),
         lambda r: result("\n".join(f"pushed {ref}" for ref in r["images"])))


def _verified_for(prefix: Path) -> Callable[[Path, list[Path], Reporter], Any]:
    """Verify for an install at ``prefix``: a bundle that fails is noted in that install's audit log."""
    def verify(bundle: Path, keys: list[Path], reporter: Reporter) -> Any:
        try:
            return _verified(bundle, keys, reporter)
        except VerificationError as exc:
            from airpack.install.audit import failed_verification  # noqa: PLC0415

            failed_verification(prefix, bundle, str(exc), exc.sums_sha256)
            raise

    return verify


def _install_impl(bundle: Path, keys: list[Path], options: Any, progress: bool) -> dict[str, Any]:
    from airpack.install import install as do_install  # noqa: PLC0415

    with live(progress) as (reporter, event):
        event("verifying")
        vb = _verified_for(options.prefix)(bundle, keys, reporter)
        return do_install(vb, options, reporter=reporter, on_event=event).to_dict()


def _render_summary(summary: str, r: dict[str, Any]) -> None:
    """The summary on stderr; a key made by this install alone on stdout, as the docker target prints it."""
    note(summary)
    if r["apiKey"]:
        sys.stdout.write(r["apiKey"] + "\n")


def _render_install(r: dict[str, Any]) -> None:
    s = r["smoke"]
    note(f"installed {r['name']} {r['version']} at {r['prefix']} (container {r['containerName']})\n"
         f"endpoint: {r['endpoint']}  (OpenAI-compatible; model {r['servedName']!r})\n"
         f"smoke test: {s['completionTokens']} tokens, first token {s['ttftSeconds']:.2f} s, "
         f"{s['tokensPerSecond'] or 0:.1f} tokens/s, {s['latencySeconds']:.2f} s in all")
    if r["apiKey"]:
        note(f"API key (shown once; stored in {r['apiKeyFile']}):")
        sys.stdout.write(r["apiKey"] + "\n")
    elif r["apiKeyFile"]:
        note(f"API key: unchanged, in {r['apiKeyFile']}")
    else:
        note("no API key: anyone who can reach the endpoint can use it")
    note("deploy files: " + ", ".join(r["deployFiles"]))
    if r.get("pruned"):
        note("removed older versions (--keep): " + ", ".join(r["pruned"]))


@app.command()
def install(
    bundle: BundleArg, key: PubKeyOpt, prefix: PrefixOpt,
    target: Annotated[str, typer.Option("--target", help="Where to run it: docker, compose, systemd or "
                                        "kubernetes.")] = "docker",
    port: Annotated[int, typer.Option("--port", help="Port of the endpoint.")] = 8000,
    bind: Annotated[str, typer.Option("--bind", help="Address the endpoint listens on.")] = "127.0.0.1",
    network: Annotated[str, typer.Option("--network", help="host (the engine binds --bind:--port itself) or "
                                         "bridge (published port).")] = "host",
    allow_downgrade: Annotated[bool, typer.Option("--allow-downgrade", help="Install over a newer version.")] = False,
    no_api_key: Annotated[bool, typer.Option("--no-api-key", help="Leave the endpoint without an API key.")] = False,
    registry: Annotated[str | None, typer.Option("--registry", metavar="REGISTRY", help="kubernetes: HOST[:PORT][/PREFIX] that "
                                                 "'airpack push' put the images in.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="kubernetes: run kubectl apply.")] = False,
    show_diff: Annotated[bool, typer.Option("--show-diff", help="Print the deploy files' changes from the "
                                            "as-built defaults.")] = False,
    keep: Annotated[int | None, typer.Option("--keep", min=1, help="After a successful install, remove the oldest "
                                             "versions (never the active or previous one) beyond this many. "
                                             "Default: keep all.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify, check the host, copy weights, load images, start the engine, wait for health, smoke-test it.

    Exit 3 when the bundle (or a byte read during install) is not what was signed, 4 when the engine does
    not become healthy or fails the smoke test (its container is removed).
    """
    from airpack.install import InstallOptions  # noqa: PLC0415
    from airpack.install.flags import check_install_flags  # noqa: PLC0415

    def checked(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        check_install_flags(target, registry=registry, apply=apply, show_diff=show_diff)  # exit 2: does not apply
        return fn()

    if target != "docker":  # compose, systemd, kubernetes: airpack.install.targets (docs/targets.md)
        from airpack.install import targets as t  # noqa: PLC0415

        _run("install", as_json, lambda: checked(lambda: t.cli_install(bundle, key, t.TargetOptions(
            prefix=prefix, target=target, port=port, bind=bind, network=network, allow_downgrade=allow_downgrade,
            api_key=not no_api_key, registry=registry, apply=apply, keep=keep), live(not as_json),
            _verified_for(prefix))),
            lambda r: _render_summary(t.render_text(r, show_diff), r))
        return
    options = InstallOptions(prefix=prefix, target=target, port=port, bind=bind, network=network,
                             allow_downgrade=allow_downgrade, api_key=not no_api_key, keep=keep)
    _run("install", as_json, lambda: checked(lambda: _install_impl(bundle, key, options, not as_json)),
         _render_install)


def _render_status(r: dict[str, Any]) -> None:
    c = r["container"] or {"status": "missing"}
    health = "healthy" if r["healthy"] else f"NOT healthy ({r['health']['status'] or r['health']['body']})"
    docker_health = f"Docker health: {c['health']}" if c.get("health") else "no Docker health check"
    result(f"{r['name']} {r['version']} at {r['prefix']}\nendpoint: {r['endpoint']} — {health} (airpack's probe)\n"
           f"container: {r['containerName']} {c['status']} ({docker_health})")
    if s := r["smoke"]:
        result(f"last smoke test: {_smoke_line(s)} ({s.get('at') or r['installed']})")
    if r.get("unit"):
        result(f"systemd unit: {r['unit']}")
    for v in r.get("versions") or ():
        mark = "active" if v["active"] else "previous" if v["previous"] else "kept"
        result(f"  {v['id']:<28} {mark:<8} container {(v['container'] or {}).get('status', 'missing')}")
    if p := r.get("pending"):
        result(f"unfinished {p['op']} to {p['to']} (phase {p['phase']}): in progress")


@app.command()
def status(prefix: PrefixOpt, as_json: JsonOpt = False) -> None:
    """What is installed at the prefix, whether it runs and answers its health check now."""
    from airpack.install import status as do_status  # noqa: PLC0415

    _run("status", as_json, lambda: do_status(prefix), _render_status)


@app.command()
def uninstall(
    prefix: PrefixOpt,
    remove_weights: Annotated[bool, typer.Option("--remove-weights", help="Also delete the copied weights.")] = False,
    remove_images: Annotated[bool, typer.Option("--remove-images", help="Also remove the images from the engine.")]
    = False,
    version: Annotated[str | None, typer.Option("--version", help="Remove only this installed version (not the "
                                                "active one): its container, weights and files.")] = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Remove every version (the default without "
                                               "--version).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop and remove the service's containers; weights and images stay unless asked."""
    from airpack.install import uninstall as do_uninstall  # noqa: PLC0415

    def render(r: dict[str, Any]) -> None:
        result(f"removed {len(r['containersRemoved'])} container(s)"
               + (f", images {', '.join(r['imagesRemoved'])}" if r["imagesRemoved"] else "")
               + ("; weights kept" if r["weightsKept"] else "; weights removed"))
        _print_commands(r, "run these to take it away:")

    def run() -> dict[str, Any]:
        from airpack.errors import UsageError  # noqa: PLC0415

        if version is not None and all_versions:
            raise UsageError("give --version or --all, not both")
        return do_uninstall(prefix, version=version, remove_weights=remove_weights, remove_images=remove_images)

    _run("uninstall", as_json, run, render)


@app.command()
def rollback(prefix: PrefixOpt, as_json: JsonOpt = False) -> None:
    """Switch back to the previous installed version (health and smoke checked; exit 4 when it fails)."""
    from airpack.install import rollback as do_rollback  # noqa: PLC0415

    def run() -> dict[str, Any]:
        with live(not as_json) as (_, event):
            return do_rollback(prefix, on_event=event)

    def render(r: dict[str, Any]) -> None:
        result(f"rolled back {r['name']} {r['previousVersion']} -> {r['version']}"
               + (f"; endpoint {r['endpoint']}" if r.get("started", True) else " (the record; nothing was "
                  "switched here)"))
        if r.get("smoke"):
            result(f"smoke test now: {_smoke_line(r['smoke'])}")
        _print_commands(r, "run these to switch to it:")

    _run("rollback", as_json, run, render)


def _smoke_line(s: dict[str, Any]) -> str:
    return (f"{'ok' if s['ok'] else 'FAILED'}, {s['completionTokens']} tokens, first token {s['ttftSeconds']} s, "
            f"{s['tokensPerSecond']} tokens/s")


def _print_commands(r: dict[str, Any], heading: str) -> None:
    """The commands a library call returned instead of running (no systemd or kubectl on this host)."""
    if r.get("commands"):
        result(heading + "\n" + "\n".join(f"  {c}" for c in r["commands"]))
    if r.get("alternativeCommands"):
        result("or:\n" + "\n".join(f"  {c}" for c in r["alternativeCommands"]))


def _plan_impl(spec_path: Path, o: Any) -> dict[str, Any]:
    from airpack.errors import CompatibilityError  # noqa: PLC0415
    from airpack.planning import plan_spec  # noqa: PLC0415
    from airpack.spec import load_spec  # noqa: PLC0415

    planned = plan_spec(load_spec(spec_path), o)
    if planned is None:
        raise CompatibilityError("the target's memory is unknown", hint="give --gpu NAME or --vram GIB "
                                 "(host RAM with --gpus 0), or target.gpu / target.vram in the spec")
    p = planned.to_dict()
    failed = [f"{c['name']}: {c['message']}" for c in p["checks"] if c["status"] == "fail"]
    if not p["fits"] or failed:  # the verdict is the exit code: a plan that does not fit fails (exit 2)
        why = failed or [f"needs {p['required_bytes'] / 2**30:.2f} GiB of {p['available_bytes'] / 2**30:.2f} GiB"]
        raise Verdict(p, CompatibilityError("the model does not fit or run on the target: " + "; ".join(why)))
    return p


@app.command()
def plan(
    spec: SpecArg,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU name: T4, L4, A10G, L40S, A100-80GB, H100-80GB, "
                                            "H200, RTX-4090 …")] = None,
    vram: Annotated[float | None, typer.Option("--vram", help="GiB per GPU (host RAM with --gpus 0).")] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", help="Number of GPUs (0: CPU and host RAM).")] = None,
    context: Annotated[int | None, typer.Option("--context", help="Tokens per sequence.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Sequences at once.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Will the model fit and run on the target? Weights, KV cache, overhead, longest context, checks."""
    from airpack.planning import Overrides  # noqa: PLC0415

    def render(p: dict[str, Any]) -> None:
        gib = 2**30
        where = f"{p['gpus']} x {p['gpu'] or 'GPU'}" if p["device"] == "gpu" else "host RAM"
        result(f"{p['engine']} on {where}: weights {p['weights_bytes'] / gib:.2f} GiB, KV "
               f"{p['kv_bytes_per_token'] / 1024:.1f} KiB/token, needs {p['required_bytes'] / gib:.2f} of "
               f"{p['available_bytes'] / gib:.2f} GiB at {p['context']} tokens x {p['concurrency']}: "
               f"{'FITS' if p['fits'] else 'DOES NOT FIT'}; longest context {p['max_context']}")
        for c in p["checks"]:
            result(f"  {c['status']:<5} {c['name']}: {c['message']}")

    o = Overrides(gpu=gpu, vram_gib=vram, gpus=gpus, context=context, concurrency=concurrency)
    _run("plan", as_json, lambda: _plan_impl(spec, o), render)


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
