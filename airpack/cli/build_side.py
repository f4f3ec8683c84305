"""Build-side commands: keygen, lock, build, sign, plan (the connected machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from airpack.cli.common import (
    _PASSPHRASE_HELP,
    BundleArg,
    JsonOpt,
    NoToolOpt,
    SpecArg,
    ToolIndexOpt,
    ToolLinksOpt,
    _cache,
    _run,
    _tool,
    _trusted,
    app,
)
from airpack.cli_output import Verdict, note, result
from airpack.cli_output import reporter as _reporter
from airpack.units import format_size, plural


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


def _lock_impl(spec_path: Path, out: Path | None, tool: Any = None) -> dict[str, Any]:
    from airpack.lock import default_lock_path, write_lock  # noqa: PLC0415
    from airpack.locking import resolve  # noqa: PLC0415
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
    from airpack.locking import resolve  # noqa: PLC0415
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


def _plan_impl(spec_path: Path, o: Any) -> dict[str, Any]:
    from airpack.errors import CompatibilityError  # noqa: PLC0415
    from airpack.plan.spec import plan_spec  # noqa: PLC0415
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
    from airpack.plan.spec import Overrides  # noqa: PLC0415

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

