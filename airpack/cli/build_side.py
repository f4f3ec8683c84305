"""Build-side commands: keygen, lock, build, sign, plan (the connected machine); library: :mod:`airpack.api`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from airpack import api
from airpack.cli.common import (
    _PASSPHRASE_HELP,
    BundleArg,
    JsonOpt,
    NoToolOpt,
    SpecArg,
    ToolIndexOpt,
    ToolLinksOpt,
    _run,
    _tool,
    app,
)
from airpack.cli_output import Verdict, note, result
from airpack.cli_output import reporter as _reporter
from airpack.units import format_size, plural

if TYPE_CHECKING:
    from airpack.plan import Plan


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

    def render(kp: api.KeygenResult) -> None:
        result(f"private key: {kp.private_key} {kp.where}\npublic key:  {kp.public_key}\n"
               f"fingerprint: {kp.fingerprint}")

    _run("keygen", as_json, lambda: api.keygen(out, name=name, algorithm=algorithm, passphrase_env=passphrase_env,
                                               pkcs11=pkcs11), render)


@app.command()
def lock(spec: SpecArg, out: Annotated[Path | None, typer.Option("-o", "--out", metavar="FILE", help="Lock file to write "
                                                                  "(default: SPEC.lock beside the spec).")] = None,
         no_tool: NoToolOpt = False, tool_index_url: ToolIndexOpt = None, tool_find_links: ToolLinksOpt = None,
         as_json: JsonOpt = False) -> None:
    """Pin every file (size, sha256), commit and image digest, and check the model fits the target."""

    def render(r: api.LockResult) -> None:
        result(f"locked {plural(r.files, 'file')} ({format_size(r.bytes)}) → {r.path}")
        for e in r.lock.model.excluded:
            result(f"  left out {e.path}: {e.reason}")
        for c in r.lock.checks:
            if c["status"] != "pass":
                note(f"  {c['status']}: {c['name']}: {c['message']}")

    _run("lock", as_json, lambda: api.lock(spec, out=out, tool=_tool(no_tool, tool_index_url, tool_find_links)),
         render)


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

    def render(r: api.BuildResult) -> None:
        signed = f"signed by {r.signed_by}" if r.signed_by else "UNSIGNED (run 'airpack sign')"
        result(f"built {r.bundle}: {r.name} {r.version}, {plural(r.files, 'file')}, "
               f"{format_size(r.bytes)}, {signed}" + ("" if r.tool else ", without tool/"))

    def run() -> api.BuildResult:
        with _reporter(not as_json) as reporter:
            return api.build(spec, out, key=key, passphrase_env=passphrase_env, lock_path=lock_file, force=force,
                             tool=_tool(no_tool, tool_index_url, tool_find_links), reporter=reporter)

    _run("build", as_json, run, render)


@app.command()
def sign(bundle: BundleArg, key: Annotated[Path, typer.Option("--key", metavar="FILE", help="Private key (PEM file "
                                                               "or pkcs11: URI).")],
         passphrase_env: Annotated[str | None, typer.Option("--passphrase-env", metavar="VAR", help=_PASSPHRASE_HELP)] = None,
         force: Annotated[bool, typer.Option("--force", help="Replace an existing signature.")] = False,
         pub: Annotated[list[Path] | None, typer.Option("--pub", metavar="FILE", help="Public key (PEM) to name the "
                                                        "signer of an existing signature by; repeatable.")] = None,
         as_json: JsonOpt = False) -> None:
    """Sign a built bundle (after checking every file against its SHA256SUMS)."""

    def run() -> api.SignResult:
        with _reporter(not as_json) as reporter:
            return api.sign(bundle, key, passphrase_env=passphrase_env, force=force, known=pub or [],
                            reporter=reporter)

    _run("sign", as_json, run, lambda r: result(f"signed {r.bundle} with {r.signed_by}" + (
        f" (replaced a signature by {r.replaced})" if r.replaced else "")))


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

    def render(p: Plan) -> None:
        gib = 2**30
        where = f"{p.gpus} x {p.gpu or 'GPU'}" if p.device == "gpu" else "host RAM"
        result(f"{p.engine} on {where}: weights {p.weights_bytes / gib:.2f} GiB, KV "
               f"{p.kv_bytes_per_token / 1024:.1f} KiB/token, needs {p.required_bytes / gib:.2f} of "
               f"{p.available_bytes / gib:.2f} GiB at {p.context} tokens x {p.concurrency}: "
               f"{'FITS' if p.fits else 'DOES NOT FIT'}; longest context {p.max_context}")
        for c in p.checks:
            result(f"  {c.status:<5} {c.name}: {c.message}")

    def run() -> Plan:
        planned = api.plan(spec, gpu=gpu, vram_gib=vram, gpus=gpus, context=context, concurrency=concurrency)
        failed = api.fit_error(planned)
        if failed is not None:  # the verdict is the exit code: a plan that does not fit fails (exit 2)
            raise Verdict(planned, failed)
        return planned

    _run("plan", as_json, run, render)

