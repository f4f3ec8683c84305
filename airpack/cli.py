"""The command line: the only module that imports typer. Each command parses options, calls one library
function, and renders the result as text (stderr for status) or ``--json`` (stdout). Errors become exit
codes in exactly one place, ``_run``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from airpack import __version__
from airpack.errors import EXIT_ERROR, EXIT_OK, AirpackError, VerificationError
from airpack.progress import Advance, Reporter, Silent

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Carry LLMs into air-gapped networks as one signed, verifiable bundle.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
SpecArg = Annotated[Path, typer.Argument(help="The spec file (airpack.yaml).", show_default=False)]
BundleArg = Annotated[Path, typer.Argument(help="The bundle folder.", show_default=False)]
PubKeyOpt = Annotated[list[Path], typer.Option("--key", help="Trusted public key (PEM); repeatable.")]


class _RichReporter:
    """Progress bars on stderr when it is a terminal; silent otherwise."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def task(self, description: str, total: int) -> Advance:
        task_id = self._progress.add_task(description, total=total)
        return lambda n: self._progress.advance(task_id, n)

    def done(self, advance: Advance) -> None:
        return None


@contextmanager
def _reporter(enabled: bool) -> Iterator[Reporter]:
    if not (enabled and err.is_terminal):
        yield Silent()
        return
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True) as progress:
        yield _RichReporter(progress)


def _emit_json(command: str, exit_code: int, data: Any, problems: list[dict[str, str]] | None = None,
               error: str | None = None) -> None:
    out = {"airpackResultVersion": 1, "command": command, "ok": exit_code == EXIT_OK, "exitCode": exit_code,
           "data": data, "problems": problems or [], "error": error}
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")


def _run(command: str, as_json: bool, fn: Callable[[], T], render: Callable[[T], None]) -> None:
    """Call ``fn``; print its result or its error; exit with the error's code. The one error→exit mapping."""
    try:
        result = fn()
    except AirpackError as exc:
        problems = [p.to_dict() for p in exc.problems] if isinstance(exc, VerificationError) else []  # type: ignore[attr-defined]
        if as_json:
            _emit_json(command, exc.exit_code, None, problems, str(exc))
        else:
            for p in problems[:50]:
                err.print(f"  {p['kind']:<18} {p['path']}  ({p['detail']})", markup=False)
            if len(problems) > 50:
                err.print(f"  … and {len(problems) - 50} more (use --json for all)")
            err.print(f"error: {exc}", markup=False, style="bold red")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except OSError as exc:  # disk full, media pulled out: one line, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        msg = f"{where}{exc.strerror or exc}"
        if as_json:
            _emit_json(command, EXIT_ERROR, None, error=msg)
        else:
            err.print(f"error: {msg}", markup=False, style="bold red")
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        _emit_json(command, EXIT_OK, result)
    else:
        render(result)


def _cache() -> Path:
    from airpack.cache import cache_dir  # noqa: PLC0415

    return cache_dir()


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Folder for NAME.key and NAME.pub.")],
    name: Annotated[str, typer.Option("--name", help="Base name of the key files.")] = "airpack",
    algorithm: Annotated[str, typer.Option("--algorithm", help="ecdsa-p256 (default) or ed25519.")] = "ecdsa-p256",
    passphrase_env: Annotated[str | None, typer.Option("--passphrase-env", help="Encrypt the key with the "
                                                       "passphrase in this environment variable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a signing key pair. Keep the .key offline; carry the .pub to the far side out of band."""
    from airpack.signing import keygen as do_keygen  # noqa: PLC0415

    def make() -> dict[str, Any]:
        kp = do_keygen(out, name=name, algorithm=algorithm, passphrase_env=passphrase_env)
        return {"private_key": str(kp.private_path), "public_key": str(kp.public_path),
                "fingerprint": kp.fingerprint, "algorithm": kp.algorithm}

    def render(kp: dict[str, Any]) -> None:
        err.print(f"private key: {kp['private_key']} (mode 0600)\npublic key:  {kp['public_key']}\n"
                  f"fingerprint: {kp['fingerprint']}", markup=False)

    _run("keygen", as_json, make, render)


def _lock_impl(spec_path: Path, out: Path | None) -> dict[str, Any]:
    from airpack.lock import default_lock_path, write_lock  # noqa: PLC0415
    from airpack.resolve import resolve  # noqa: PLC0415
    from airpack.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    lock = resolve(spec, cache_dir=_cache())
    path = out or default_lock_path(spec_path)
    write_lock(lock, path)
    return {"lock": str(path), "files": len(lock.model.files), "bytes": lock.model.total_size,
            "excluded": [{"path": e.path, "reason": e.reason} for e in lock.model.excluded],
            "images": [i.to_dict() for i in lock.images], "checks": list(lock.checks)}


@app.command()
def lock(spec: SpecArg, out: Annotated[Path | None, typer.Option("-o", "--out", help="Lock file to write "
                                                                  "(default: airpack.lock beside the spec).")] = None,
         as_json: JsonOpt = False) -> None:
    """Pin every file (size, sha256), commit and image digest, and check the model fits the target."""

    def render(r: dict[str, Any]) -> None:
        err.print(f"locked {r['files']} files ({r['bytes'] / 1e6:.1f} MB) → {r['lock']}", markup=False)
        for e in r["excluded"]:
            err.print(f"  left out {e['path']}: {e['reason']}", markup=False)
        for c in r["checks"]:
            if c["status"] != "pass":
                err.print(f"  {c['status']}: {c['name']}: {c['message']}", markup=False)

    _run("lock", as_json, lambda: _lock_impl(spec, out), render)


def _build_impl(spec_path: Path, out: Path, key_path: Path | None, passphrase_env: str | None, force: bool,
                lock_path: Path | None, progress: bool) -> dict[str, Any]:
    from airpack.bundle import build_bundle  # noqa: PLC0415
    from airpack.lock import check_lock_matches, default_lock_path, read_lock, write_lock  # noqa: PLC0415
    from airpack.resolve import resolve  # noqa: PLC0415
    from airpack.signing import load_private_key  # noqa: PLC0415
    from airpack.spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_path)
    key = load_private_key(key_path, passphrase_env=passphrase_env) if key_path else None
    lp = lock_path or default_lock_path(spec_path)
    if lp.exists():
        lk = read_lock(lp)
        check_lock_matches(lk, spec, lp)
    else:
        lk = resolve(spec, cache_dir=_cache())
        write_lock(lk, lp)
    with _reporter(progress) as reporter:
        result = build_bundle(spec, lk, out, key=key, cache_dir=_cache(), force=force, reporter=reporter)
    return {"bundle": str(result.path), "name": result.manifest.name, "version": result.manifest.version,
            "files": len(result.manifest.files), "bytes": result.total_bytes,
            "sums_sha256": result.sums_sha256, "signed_by": result.signed_by}


@app.command()
def build(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", help="Where the bundle folder appears when complete.")],
    key: Annotated[Path | None, typer.Option("--key", help="Sign at once with this private key.")] = None,
    passphrase_env: Annotated[str | None, typer.Option("--passphrase-env")] = None,
    lock_file: Annotated[Path | None, typer.Option("--lock", help="Lock file (default: beside the spec).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle at --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch everything the lock pins into a bundle folder (locking first when there is no lock)."""

    def render(r: dict[str, Any]) -> None:
        signed = f"signed by {r['signed_by']}" if r["signed_by"] else "UNSIGNED (run 'airpack sign')"
        err.print(f"built {r['bundle']}: {r['name']} {r['version']}, {r['files']} files, "
                  f"{r['bytes'] / 1e6:.1f} MB, {signed}", markup=False)

    _run("build", as_json, lambda: _build_impl(spec, out, key, passphrase_env, force, lock_file, not as_json),
         render)


def _sign_impl(bundle: Path, key_path: Path, passphrase_env: str | None, progress: bool) -> dict[str, Any]:
    from airpack.bundle import write_sums_and_sign  # noqa: PLC0415
    from airpack.layout import SUMS  # noqa: PLC0415
    from airpack.signing import load_private_key  # noqa: PLC0415
    from airpack.verify import check_integrity  # noqa: PLC0415

    key = load_private_key(key_path, passphrase_env=passphrase_env)
    with _reporter(progress) as reporter:
        check_integrity(bundle, reporter=reporter)
    sums = (bundle / SUMS).read_bytes()
    fpr = write_sums_and_sign(bundle, sums, key)
    return {"bundle": str(bundle), "signed_by": fpr}


@app.command()
def sign(bundle: BundleArg, key: Annotated[Path, typer.Option("--key", help="Private key (PEM).")],
         passphrase_env: Annotated[str | None, typer.Option("--passphrase-env")] = None,
         as_json: JsonOpt = False) -> None:
    """Sign a built bundle (after checking every file against its SHA256SUMS)."""
    _run("sign", as_json, lambda: _sign_impl(bundle, key, passphrase_env, not as_json),
         lambda r: err.print(f"signed {r['bundle']} with {r['signed_by']}", markup=False))


def _trusted(keys: list[Path]) -> list[Any]:
    """The trusted public keys named by ``--key``."""
    from airpack.signing import load_public_key  # noqa: PLC0415

    return [load_public_key(k) for k in keys]


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
            "files": len(vb.manifest.files) + 1, "bytes": vb.total_bytes}


@app.command()
def verify(bundle: BundleArg, key: PubKeyOpt, as_json: JsonOpt = False) -> None:
    """Prove every byte of the bundle is what the trusted key signed. Exit 3 when it is not."""

    def render(r: dict[str, Any]) -> None:
        what = f"volume {r['volume']} of {r['count']}, {r['files']} pieces" if "volume" in r else f"{r['files']} files"
        err.print(f"OK {r['name']} {r['version']}: {what}, {r['bytes'] / 1e6:.1f} MB, "
                  f"signed by {r['key_fingerprint']}", markup=False)

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
          out: Annotated[Path, typer.Option("--out", help="Folder to write the volume folders into.")],
          size: Annotated[str | None, typer.Option("--size", help="Capacity of one volume: 32GB (10^9), 4GiB, "
                                                   "700MB (default: one volume).")] = None,
          max_file: Annotated[str | None, typer.Option(
              "--max-file", help="Largest file on the media, e.g. 4095MiB for FAT32.")] = None,
          volume: Annotated[int | None, typer.Option("--volume", help="Write only volume N (e.g. straight onto "
                                                     "the mounted medium).")] = None,
          base: Annotated[Path | None, typer.Option("--base", help="Delta: leave out what this previous bundle "
                                                    "(folder or its SHA256SUMS) already holds.")] = None,
          as_json: JsonOpt = False) -> None:
    """Split a verified bundle into volumes for removable media; each can be verified on its own."""
    def render(r: dict[str, Any]) -> None:
        if r["fromBase"] is not None:
            err.print(f"delta: {len(r['fromBase'])} file(s) left to the base ('airpack join --base')", markup=False)
        for v in r["volumes"]:
            err.print(f"volume {v['index']} of {r['count']}: {v['folder']} ({v['pieces']} pieces, "
                      f"{v['bytes'] / 1e9:.2f} GB)", markup=False)

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
                                                       show_default=False)],
         key: PubKeyOpt,
         out: Annotated[Path, typer.Option("--out", help="The bundle folder to assemble.")],
         base: Annotated[Path | None, typer.Option("--base", help="For a delta split: the previous bundle "
                                                   "folder, source of what the volumes leave out.")] = None,
         as_json: JsonOpt = False) -> None:
    """Join volumes into the bundle, checking every piece as it is copied; resumable, one medium at a time."""
    def render(r: dict[str, Any]) -> None:
        if r["complete"]:
            err.print(f"complete: {r['out']} (now 'airpack install' it)", markup=False)
        else:
            needed = ", ".join(map(str, r["missing"])) or "the rest of a volume already started"
            err.print(f"have volume(s) {', '.join(map(str, r['volumes'])) or 'none yet'} of {r['count']}; "
                      f"{r['missing_files']} file(s) incomplete; still needed: {needed} (rerun 'airpack join' "
                      "with them)", markup=False)

    _run("join", as_json, lambda: _join_impl(volumes, key, out, not as_json, base), render)


@app.command()
def inspect(bundle: BundleArg, show_diff: Annotated[bool, typer.Option(
        "--show-diff", help="Show how install changes the deploy files (host parameters).")] = False,
            as_json: JsonOpt = False) -> None:
    """Show what a bundle says it contains (unverified: run 'airpack verify' to prove it)."""
    from airpack.describe import describe_bundle  # noqa: PLC0415

    def describe() -> dict[str, Any]:
        d = describe_bundle(bundle)
        if show_diff or as_json:
            from airpack.install.targets import bundle_deploy_diff  # noqa: PLC0415

            d["deployDiff"] = bundle_deploy_diff(bundle) if d["deploy"] else {}
        from airpack.delta import describe_volume  # noqa: PLC0415

        d.update({"volume": describe_volume(bundle)} if (bundle / "airpack-volume.json").is_file() else {})
        return d

    def render(d: dict[str, Any]) -> None:
        err.print(f"{d['name']} {d['version']} (created {d['created']}, airpack {d['airpackVersion']}, "
                  f"format {d['formatVersion']}) — {'signed' if d['signed'] else 'UNSIGNED'}, not verified",
                  markup=False)
        m = d["model"]
        err.print(f"model: {m.get('source')} {m.get('repo') or m.get('path')} {m.get('commit') or ''}".rstrip(),
                  markup=False)
        for f in m["files"]:
            err.print(f"  {f['size']:>14,}  {f['path']}", markup=False)
        for i in d["images"]:
            err.print(f"image: {i.get('ref')} {i.get('digest')} {i.get('platform', '')}", markup=False)
        for k, v in sorted(d["kinds"].items()):
            err.print(f"{k}: {v['files']} files, {v['bytes']:,} bytes", markup=False)
        if "volume" in d:
            from airpack.delta import volume_lines  # noqa: PLC0415

            err.print("\n".join(volume_lines(d["volume"])), markup=False)
        for target, diff in sorted(d.get("deployDiff", {}).items()):
            err.print(f"--- {target}: as built → as installed with defaults (host network, API key)", markup=False)
            err.print(diff.rstrip() or "(no change)", markup=False, highlight=False)

    _run("inspect", as_json, describe, render)


# ---- install side: doctor, load, push, install, status, uninstall (library: airpack.install) -------------

PrefixOpt = Annotated[Path, typer.Option("--prefix", help="Install folder (weights, deploy files, state).")]


@contextmanager
def _live(enabled: bool) -> Iterator[tuple[Reporter, Callable[[str], None]]]:
    """Byte progress bars plus one status line for phases (health waits), in a single live display."""
    if not enabled:
        yield Silent(), lambda _: None
        return
    if not err.is_terminal:
        yield Silent(), lambda msg: err.print(msg, markup=False)
        return
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True) as progress:
        line = progress.add_task("", total=None)
        yield _RichReporter(progress), lambda msg: progress.update(line, description=msg)


def _verified(bundle: Path, keys: list[Path], reporter: Reporter) -> Any:
    from airpack.verify import verify_bundle  # noqa: PLC0415

    return verify_bundle(bundle, _trusted(keys), reporter=reporter)


def _print_checks(checks: list[dict[str, Any]]) -> None:
    style = {"pass": "green", "warn": "yellow", "fail": "bold red"}
    for c in checks:
        err.print(f"[{style[c['status']]}]{c['status'].upper():<4}[/] {c['name']:<14} ", end="")
        err.print(c["detail"], markup=False)
        if c["fix"] and c["status"] != "pass":
            err.print(f"     fix: {c['fix']}", markup=False)


def _doctor_impl(bundle: Path | None, prefix: Path | None, as_json: bool) -> dict[str, Any]:
    from airpack.errors import InstallError, UsageError  # noqa: PLC0415
    from airpack.install.doctor import doctor as run_doctor  # noqa: PLC0415
    from airpack.layout import MANIFEST, Manifest  # noqa: PLC0415

    manifest = None
    if bundle is not None:
        try:
            manifest = Manifest.from_json((bundle / MANIFEST).read_bytes())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{bundle}: not a readable bundle ({exc})") from None
    where = prefix or Path("/opt/airpack") / (manifest.name if manifest else "")
    report = run_doctor(where, manifest, bundle).to_dict()
    if not report["ok"]:
        if not as_json:
            _print_checks(report["checks"])
        failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if c["status"] == "fail"]
        raise InstallError(f"{len(failed)} check(s) failed: " + "; ".join(failed))
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
    _run("doctor", as_json, lambda: _doctor_impl(bundle, prefix, as_json), lambda r: _print_checks(r["checks"]))


def _load_impl(bundle: Path, keys: list[Path], progress: bool) -> dict[str, Any]:
    from airpack.install.engine import connect  # noqa: PLC0415
    from airpack.install.images import load_images  # noqa: PLC0415

    with _live(progress) as (reporter, _):
        vb = _verified(bundle, keys, reporter)
        tags = load_images(vb, connect(), reporter)
    return {"bundle": str(bundle), "name": vb.manifest.name, "version": vb.manifest.version, "tags": tags}


@app.command()
def load(bundle: BundleArg, key: PubKeyOpt, as_json: JsonOpt = False) -> None:
    """Verify the bundle, then load its images into the local Docker engine."""
    _run("load", as_json, lambda: _load_impl(bundle, key, not as_json),
         lambda r: err.print("loaded " + (", ".join(r["tags"]) or "no images"), markup=False))


def _push_impl(bundle: Path, keys: list[Path], registry: str, progress: bool) -> dict[str, Any]:
    from airpack.install.images import push_images  # noqa: PLC0415

    with _live(progress) as (reporter, _):
        vb = _verified(bundle, keys, reporter)
        refs = push_images(vb, registry, reporter)
    return {"bundle": str(bundle), "registry": registry, "images": refs}


@app.command()
def push(bundle: BundleArg, key: PubKeyOpt,
         registry: Annotated[str, typer.Option("--registry", help="HOST[:PORT][/PREFIX] of the internal registry.")],
         as_json: JsonOpt = False) -> None:
    """Verify the bundle, then push its images, byte for byte, to an internal registry."""
    _run("push", as_json, lambda: _push_impl(bundle, key, registry, not as_json),
         lambda r: err.print("\n".join(f"pushed {ref}" for ref in r["images"]), markup=False))


def _verified_for(prefix: Path) -> Callable[[Path, list[Path], Reporter], Any]:
    """Verify for an install at ``prefix``: a bundle that fails is noted in that install's audit log."""
    def verify(bundle: Path, keys: list[Path], reporter: Reporter) -> Any:
        try:
            return _verified(bundle, keys, reporter)
        except VerificationError as exc:
            from airpack.install.audit import failed_verification  # noqa: PLC0415

            failed_verification(prefix, bundle, str(exc))
            raise

    return verify


def _install_impl(bundle: Path, keys: list[Path], options: Any, progress: bool) -> dict[str, Any]:
    from airpack.install import install as do_install  # noqa: PLC0415

    with _live(progress) as (reporter, event):
        event("verifying")
        vb = _verified_for(options.prefix)(bundle, keys, reporter)
        return do_install(vb, options, reporter=reporter, on_event=event).to_dict()


def _render_install(r: dict[str, Any]) -> None:
    s = r["smoke"]
    err.print(f"installed {r['name']} {r['version']} at {r['prefix']} (container {r['containerName']})\n"
              f"endpoint: {r['endpoint']}  (OpenAI-compatible; model {r['servedName']!r})\n"
              f"smoke test: {s['completionTokens']} tokens, first token {s['ttftSeconds']:.2f} s, "
              f"{s['tokensPerSecond'] or 0:.1f} tokens/s, {s['latencySeconds']:.2f} s in all", markup=False)
    if r["apiKey"]:
        err.print(f"API key (shown once; stored in {r['apiKeyFile']}):", markup=False)
        sys.stdout.write(r["apiKey"] + "\n")
    elif r["apiKeyFile"]:
        err.print(f"API key: unchanged, in {r['apiKeyFile']}", markup=False)
    else:
        err.print("no API key: anyone who can reach the endpoint can use it", markup=False)
    err.print("deploy files: " + ", ".join(r["deployFiles"]), markup=False)
    if r.get("pruned"):
        err.print("removed older versions (--keep): " + ", ".join(r["pruned"]), markup=False)


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
    registry: Annotated[str | None, typer.Option("--registry", help="kubernetes: HOST[:PORT][/PREFIX] that "
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

    if target != "docker":  # compose, systemd, kubernetes: airpack.install.targets (docs/targets.md)
        from airpack.install import targets as t  # noqa: PLC0415

        _run("install", as_json, lambda: t.cli_install(bundle, key, t.TargetOptions(
            prefix=prefix, target=target, port=port, bind=bind, network=network, allow_downgrade=allow_downgrade,
            api_key=not no_api_key, registry=registry, apply=apply, keep=keep), _live(not as_json),
            _verified_for(prefix)),
            lambda r: err.print(t.render_text(r, show_diff), markup=False))
        return
    options = InstallOptions(prefix=prefix, target=target, port=port, bind=bind, network=network,
                             allow_downgrade=allow_downgrade, api_key=not no_api_key, keep=keep)
    _run("install", as_json, lambda: _install_impl(bundle, key, options, not as_json), _render_install)


def _render_status(r: dict[str, Any]) -> None:
    c = r["container"] or {"status": "missing"}
    health = "healthy" if r["healthy"] else f"NOT healthy ({r['health']['status'] or r['health']['body']})"
    err.print(f"{r['name']} {r['version']} at {r['prefix']}\nendpoint: {r['endpoint']} — {health}\n"
              f"container: {r['containerName']} {c['status']}", markup=False)
    if s := r["smoke"]:
        err.print(f"last smoke test: {'ok' if s['ok'] else 'FAILED'}, {s['completionTokens']} tokens, first token "
                  f"{s['ttftSeconds']} s, {s['tokensPerSecond']} tokens/s ({r['installed']})", markup=False)
    if r.get("unit"):
        err.print(f"systemd unit: {r['unit']}", markup=False)
    for v in r.get("versions") or ():
        mark = "active" if v["active"] else "previous" if v["previous"] else "kept"
        err.print(f"  {v['id']:<28} {mark:<8} container {(v['container'] or {}).get('status', 'missing')}",
                  markup=False)
    if p := r.get("pending"):
        err.print(f"unfinished {p['op']} to {p['to']} (phase {p['phase']}): in progress", markup=False)


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
        err.print(f"removed {len(r['containersRemoved'])} container(s)"
                  + (f", images {', '.join(r['imagesRemoved'])}" if r["imagesRemoved"] else "")
                  + ("; weights kept" if r["weightsKept"] else "; weights removed"), markup=False)
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
        with _live(not as_json) as (_, event):
            return do_rollback(prefix, on_event=event)

    def render(r: dict[str, Any]) -> None:
        err.print(f"rolled back {r['name']} {r['previousVersion']} -> {r['version']}"
                  + (f"; endpoint {r['endpoint']}" if r.get("started", True) else " (the record; nothing was "
                     "switched here)"), markup=False)
        _print_commands(r, "run these to switch to it:")

    _run("rollback", as_json, run, render)


def _print_commands(r: dict[str, Any], heading: str) -> None:
    """The commands a library call returned instead of running (no systemd or kubectl on this host)."""
    if r.get("commands"):
        err.print(heading + "\n" + "\n".join(f"  {c}" for c in r["commands"]), markup=False)
    if r.get("alternativeCommands"):
        err.print("or:\n" + "\n".join(f"  {c}" for c in r["alternativeCommands"]), markup=False)


def _plan_impl(spec_path: Path, o: Any) -> dict[str, Any]:
    from airpack.errors import CompatibilityError  # noqa: PLC0415
    from airpack.planning import plan_spec  # noqa: PLC0415
    from airpack.spec import load_spec  # noqa: PLC0415

    result = plan_spec(load_spec(spec_path), o)
    if result is None:
        raise CompatibilityError("the target's memory is unknown", hint="give --gpu NAME or --vram GIB "
                                 "(host RAM with --gpus 0), or target.gpu / target.vram in the spec")
    return result.to_dict()


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
        err.print(f"{p['engine']} on {where}: weights {p['weights_bytes'] / gib:.2f} GiB, KV "
                  f"{p['kv_bytes_per_token'] / 1024:.1f} KiB/token, needs {p['required_bytes'] / gib:.2f} of "
                  f"{p['available_bytes'] / gib:.2f} GiB at {p['context']} tokens x {p['concurrency']}: "
                  f"{'FITS' if p['fits'] else 'DOES NOT FIT'}; longest context {p['max_context']}", markup=False)
        for c in p["checks"]:
            err.print(f"  {c['status']:<5} {c['name']}: {c['message']}", markup=False)

    o = Overrides(gpu=gpu, vram_gib=vram, gpus=gpus, context=context, concurrency=concurrency)
    _run("plan", as_json, lambda: _plan_impl(spec, o), render)


@app.command()
def version() -> None:
    """Print airpack's version."""
    sys.stdout.write(f"airpack {__version__}\n")


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
