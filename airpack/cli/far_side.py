"""Far-side commands: doctor, load, push, install, status, uninstall, rollback (library: airpack.install)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer

from airpack.cli.common import (
    BundleArg,
    JsonOpt,
    PrefixOpt,
    PubKeyOpt,
    WeightsOpt,
    _run,
    _verified,
    app,
)
from airpack.cli_output import Verdict, live, note, print_checks, result
from airpack.errors import UsageError, VerificationError
from airpack.progress import Reporter

if TYPE_CHECKING:
    from airpack.install import InstallOptions, InstallResult, RollbackResult, StatusReport, UninstallResult


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


def _push_impl(bundle: Path, keys: list[Path], registry: str, progress: bool, weights: bool) -> dict[str, Any]:
    from airpack.install.images import push_images, push_model, push_weights_image  # noqa: PLC0415
    from airpack.spec_kubernetes import signed_weights_mode  # noqa: PLC0415

    with live(progress) as (reporter, _):
        vb = _verified(bundle, keys, reporter)
        refs = push_images(vb, registry, reporter)
        model = push_model(vb, registry, reporter)
        out = {"bundle": str(bundle), "registry": registry, "images": refs, "model": model}
        if weights or signed_weights_mode(vb.manifest.spec) == "init-copy":  # the pods will copy from it
            out["weightsImage"] = push_weights_image(vb, registry, reporter)
    return out


def _render_push(r: dict[str, Any]) -> None:
    lines = [*(f"pushed {ref}" for ref in r["images"]), f"pushed model {r['model']}"]
    if r.get("weightsImage"):
        lines.append(f"pushed weights image {r['weightsImage']}")
    result("\n".join(lines))


@app.command()
def push(bundle: BundleArg, key: PubKeyOpt,
         registry: Annotated[str, typer.Option("--registry", metavar="REGISTRY", help="HOST[:PORT][/PREFIX] of the internal registry.")],
         weights_image: Annotated[bool, typer.Option(
             "--weights-image", help="Also push the weights image (the runtime image plus the model files, for "
             "an init container to copy on clusters without image volumes), tagged VERSION-weights. Always pushed "
             "when the spec's deploy.kubernetes.weights is init-copy.")] = False,
         as_json: JsonOpt = False) -> None:
    """Verify the bundle, then push its images and its model (a ModelPack artifact), byte for byte, to an
    internal registry."""
    _run("push", as_json, lambda: _push_impl(bundle, key, registry, not as_json, weights_image), _render_push)


class _Document(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


D = TypeVar("D", bound=_Document)


def _run_doc(command: str, as_json: bool, fn: Callable[[], D], render: Callable[[D], None]) -> None:
    """``_run`` for a library result: ``--json`` prints its ``to_dict()``, text is rendered from the object."""
    if as_json:
        _run(command, True, lambda: fn().to_dict(), lambda _: None)
    else:
        _run(command, False, fn, render)


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


def _install_impl(bundle: Path, keys: list[Path], options: InstallOptions, progress: bool) -> InstallResult:
    from airpack.install import install as do_install  # noqa: PLC0415

    with live(progress) as (reporter, event):
        event("verifying")
        vb = _verified_for(options.prefix)(bundle, keys, reporter)
        return do_install(vb, options, reporter=reporter, on_event=event)


def render_text(r: InstallResult, show_diff: bool = False) -> str:
    """The summary of an install that wrote deploy files (on stderr: a new key goes alone on stdout)."""
    lines = [f"{r.name} {r.version} at {r.prefix}: {r.target} files written"
             + (", started" if r.started else ", NOT started")]
    if r.endpoint and r.started:
        lines.append(f"endpoint: {r.endpoint}  (OpenAI-compatible; model {r.served_name!r})")
    if s := r.smoke:
        lines.append(f"smoke test: {s['completionTokens']} tokens, first token {s['ttftSeconds']} s")
    if r.api_key:
        lines.append(f"API key (shown once, on stdout; stored in {r.api_key_file})")
    elif r.api_key_file:
        lines.append(f"API key: unchanged, in {r.api_key_file}")
    lines.append("deploy files: " + ", ".join(r.deploy_files))
    if r.commands:
        lines.append("run these to start it:")
        lines.extend(f"  {c}" for c in r.commands)
    if r.alternatives:
        lines.append("or, with podman (quadlet, podman >= 4.4):")
        lines.extend(f"  {c}" for c in r.alternatives)
    if show_diff:
        lines.append(r.deploy_diff.rstrip("\n") or "(no difference from the as-built defaults)")
    return "\n".join(lines)


def _render_started(r: InstallResult) -> None:
    """A container airpack started itself: what answers where, the smoke test, the key."""
    s = r.smoke or {}
    note(f"installed {r.name} {r.version} at {r.prefix} (container {r.state.container_name})\n"
         f"endpoint: {r.endpoint}  (OpenAI-compatible; model {r.served_name!r})\n"
         f"smoke test: {s['completionTokens']} tokens, first token {s['ttftSeconds']:.2f} s, "
         f"{s['tokensPerSecond'] or 0:.1f} tokens/s, {s['latencySeconds']:.2f} s in all")
    if r.api_key:
        note(f"API key (shown once; stored in {r.api_key_file}):")
        sys.stdout.write(r.api_key + "\n")
    elif r.api_key_file:
        note(f"API key: unchanged, in {r.api_key_file}")
    else:
        note("no API key: anyone who can reach the endpoint can use it")
    note("deploy files: " + ", ".join(r.deploy_files))
    if r.pruned:
        note("removed older versions (--keep): " + ", ".join(r.pruned))


def _render_install(r: InstallResult, show_diff: bool) -> None:
    """The summary on stderr; a key made by this install alone on stdout."""
    if r.document == "version":
        _render_started(r)
        return
    note(render_text(r, show_diff))
    if r.api_key:
        sys.stdout.write(r.api_key + "\n")


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
    weights: WeightsOpt = None,
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

    def run() -> InstallResult:
        check_install_flags(target, registry=registry, apply=apply, show_diff=show_diff,
                            weights=weights)  # exit 2: does not apply
        options = InstallOptions(prefix=prefix, target=target, port=port, bind=bind, network=network,
                                 allow_downgrade=allow_downgrade, api_key=not no_api_key, registry=registry,
                                 apply=apply, keep=keep, weights=weights)
        return _install_impl(bundle, key, options, not as_json)

    _run_doc("install", as_json, run, lambda r: _render_install(r, show_diff))


def _render_status(r: StatusReport) -> None:
    st, c = r.state, r.container or {"status": "missing"}
    health = "healthy" if r.healthy else f"NOT healthy ({r.health_status or r.health_body})"
    docker_health = f"Docker health: {c['health']}" if c.get("health") else "no Docker health check"
    result(f"{st.name} {st.version} at {r.prefix}\nendpoint: {st.endpoint} — {health} (airpack's probe)\n"
           f"container: {st.container_name} {c['status']} ({docker_health})")
    if s := st.smoke:
        result(f"last smoke test: {_smoke_line(s)} ({s.get('at') or st.installed})")
    if unit := st.extra.get("unit"):
        result(f"systemd unit: {unit}")
    for v in r.versions:
        mark = "active" if v.active else "previous" if v.previous else "kept"
        result(f"  {v.id:<28} {mark:<8} container {(v.container or {}).get('status', 'missing')}")
    if p := r.pending:
        result(f"unfinished {p.op} to {p.target} (phase {p.phase}): " + (
            "in progress" if r.pending_running
            else f"interrupted (pid {p.pid} is gone); the next install, rollback or uninstall undoes it"))


@app.command()
def status(prefix: PrefixOpt, as_json: JsonOpt = False) -> None:
    """What is installed at the prefix, whether it runs and answers its health check now."""
    from airpack.install import status as do_status  # noqa: PLC0415

    _run_doc("status", as_json, lambda: do_status(prefix), _render_status)


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

    def render(r: UninstallResult) -> None:
        result(f"removed {len(r.containers_removed)} container(s)"
               + (f", images {', '.join(r.images_removed)}" if r.images_removed else "")
               + ("; weights kept" if r.weights_kept else "; weights removed"))
        _print_commands(r.commands, r.alternatives, "run these to take it away:")

    def run() -> UninstallResult:
        if version is not None and all_versions:
            raise UsageError("give --version or --all, not both")
        return do_uninstall(prefix, version=version, remove_weights=remove_weights, remove_images=remove_images)

    _run_doc("uninstall", as_json, run, render)


@app.command()
def rollback(prefix: PrefixOpt, as_json: JsonOpt = False) -> None:
    """Switch back to the previous installed version (health and smoke checked; exit 4 when it fails)."""
    from airpack.install import rollback as do_rollback  # noqa: PLC0415

    def run() -> RollbackResult:
        with live(not as_json) as (_, event):
            return do_rollback(prefix, on_event=event)

    def render(r: RollbackResult) -> None:
        result(f"rolled back {r.name} {r.previous_version} -> {r.version}"
               + (f"; endpoint {r.endpoint}" if r.started is not False else " (the record; nothing was "
                  "switched here)"))
        if r.smoke:
            result(f"smoke test now: {_smoke_line(r.smoke)}")
        _print_commands(r.commands, r.alternatives, "run these to switch to it:")

    _run_doc("rollback", as_json, run, render)


def _smoke_line(s: dict[str, Any]) -> str:
    return (f"{'ok' if s['ok'] else 'FAILED'}, {s['completionTokens']} tokens, first token {s['ttftSeconds']} s, "
            f"{s['tokensPerSecond']} tokens/s")


def _print_commands(commands: tuple[str, ...], alternatives: tuple[str, ...], heading: str) -> None:
    """The commands a library call returned instead of running (no systemd or kubectl on this host)."""
    if commands:
        result(heading + "\n" + "\n".join(f"  {c}" for c in commands))
    if alternatives:
        result("or:\n" + "\n".join(f"  {c}" for c in alternatives))

