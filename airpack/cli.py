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

    def render(kp: Any) -> None:
        err.print(f"private key: {kp.private_path} (mode 0600)\npublic key:  {kp.public_path}\n"
                  f"fingerprint: {kp.fingerprint}", markup=False)

    _run("keygen", as_json, lambda: do_keygen(out, name=name, algorithm=algorithm, passphrase_env=passphrase_env),
         lambda kp: render(kp))


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


def _verify_impl(bundle: Path, keys: list[Path], progress: bool) -> dict[str, Any]:
    from airpack.signing import load_public_key  # noqa: PLC0415
    from airpack.verify import verify_bundle  # noqa: PLC0415

    pubs = [load_public_key(k) for k in keys]
    with _reporter(progress) as reporter:
        vb = verify_bundle(bundle, pubs, reporter=reporter)
    return {"bundle": str(bundle), "name": vb.manifest.name, "version": vb.manifest.version,
            "key_fingerprint": vb.key_fingerprint, "sums_sha256": vb.sums_sha256,
            "files": len(vb.manifest.files) + 1, "bytes": vb.total_bytes}


@app.command()
def verify(bundle: BundleArg, key: PubKeyOpt, as_json: JsonOpt = False) -> None:
    """Prove every byte of the bundle is what the trusted key signed. Exit 3 when it is not."""

    def render(r: dict[str, Any]) -> None:
        err.print(f"OK {r['name']} {r['version']}: {r['files']} files, {r['bytes'] / 1e6:.1f} MB, "
                  f"signed by {r['key_fingerprint']}", markup=False)

    _run("verify", as_json, lambda: _verify_impl(bundle, key, not as_json), render)


@app.command()
def inspect(bundle: BundleArg, as_json: JsonOpt = False) -> None:
    """Show what a bundle says it contains (unverified: run 'airpack verify' to prove it)."""
    from airpack.describe import describe_bundle  # noqa: PLC0415

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

    _run("inspect", as_json, lambda: describe_bundle(bundle), render)


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
