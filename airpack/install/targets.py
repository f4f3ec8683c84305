"""Install a verified bundle with Compose, systemd or Kubernetes instead of a container airpack starts itself.

All three render the bundle's signed ``deploy/`` files (checked again as they are read) with this host's
parameters and write them under ``<prefix>/deploy/``; they differ in what happens next:

* ``compose``: the docker target's lifecycle (``versions/<id>/``, one Compose project per version, journal,
  lock, audit; :mod:`airpack.install.targets_compose`): copy the weights (re-hashed), load the images, stop the
  old project (kept), ``docker-compose up -d`` the new one, health, smoke test. A failure takes the new project
  ``down`` and starts the old one again (exit 4, with logs).
* ``systemd``: the same lifecycle (:mod:`airpack.install.targets_systemd`): copy the weights and write the
  docker-run ``.service`` and the podman quadlet into ``versions/<id>/``, load the images. Where systemd is
  PID 1 the unit is switched to the new version's file and restarted, health, smoke test (a failure puts the
  old file back, exit 4); elsewhere the commands are returned, not run.
* ``kubernetes``: write the manifests for ``--registry`` (where ``airpack push`` put the images) and a Secret
  with the API key into ``versions/<id>/``; ``--apply`` runs ``kubectl apply`` when kubectl exists, else the
  commands are returned. ``airpack rollback`` gives (or runs) the previous version's ``kubectl apply``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from airpack.errors import InstallError, RefusedError
from airpack.install import engine, host, versions
from airpack.install import targets_run as tr
from airpack.install.doctor import DoctorReport, doctor
from airpack.install.targets_common import (
    TARGETS,
    Event,
    Plan,
    TargetOptions,
    TargetResult,
    read_signed,
)
from airpack.install.targets_compose import compose_install
from airpack.install.targets_hosts import kubernetes_install
from airpack.install.targets_systemd import systemd_install
from airpack.lock import Lock
from airpack.progress import Reporter, Silent
from airpack.render import HostParams, default_host_params, host_diff, render_host
from airpack.signing import PublicKey
from airpack.spec import parse_spec
from airpack.verify import VerifiedBundle


def plan(verified: VerifiedBundle, options: TargetOptions) -> Plan:
    """Parse the signed spec and lock, choose and render this target's deploy files, and diff them."""
    from airpack.deploy import deploy_context  # noqa: PLC0415

    m = verified.manifest
    spec = parse_spec(m.spec, verified.path, check_paths=False)
    if spec.runtime is None:
        raise RefusedError(
            f"{m.name} {m.version} is a model-only bundle (a model update): --target {options.target} does not "
            "take one",
            hint="install it with --target docker onto a prefix that runs that model",
        )
    lock = Lock.from_dict(m.lock)
    prefix = options.prefix.absolute()
    kube = options.target == "kubernetes"
    # each version has its own folder (docs/lifecycle.md): its files name that folder's weights
    vid = versions.version_id(m.version, verified.sums_sha256)
    home = versions.version_dir(prefix, vid)
    params = HostParams(
        prefix=str(home),
        port=options.port,
        bind=options.bind,
        gpus=spec.target.gpus,
        network=options.network,
        registry=options.registry if kube else None,
        api_key_file=str(prefix / host.API_KEY_FILE) if options.api_key else None,
    )
    ctx = deploy_context(spec, lock, list(m.images))
    signed = {
        e.path.removeprefix("deploy/"): read_signed(verified.path, e) for e in m.files if e.kind == "deploy"
    }
    chosen = tr.files_for(options.target, signed)
    base = default_host_params(ctx.slug, gpus=spec.target.gpus, registry="registry.invalid" if kube else None)
    runtime = next(i for i in lock.images if i.role == "runtime")
    return Plan(
        verified,
        options,
        prefix,
        ctx,
        params,
        render_host(chosen, params),
        host_diff(chosen, params, base),
        runtime.config_digest,
    )


def install_target(
    verified: VerifiedBundle,
    options: TargetOptions,
    *,
    client: Any = None,
    reporter: Reporter | None = None,
    on_event: Event | None = None,
) -> TargetResult:
    """Install for ``options.target``; see the module docstring for what each target does."""
    p = plan(verified, options)
    say = on_event or (lambda _: None)
    reporter = reporter or Silent()
    if options.target == "kubernetes":
        return kubernetes_install(p, reporter)
    client = engine.connect(client)
    say("checking the host")
    report = doctor(p.prefix, verified.manifest, verified.path, client)
    if not report.ok:
        raise _failed_checks(report)
    if options.target == "compose":
        base = tr.compose_command()
        if base is None:
            raise InstallError(
                "neither docker-compose nor 'docker compose' is installed",
                hint="install Compose, or use --target docker",
            )
        return compose_install(p, base, client, reporter, say)
    return systemd_install(p, client, reporter, say)


def _failed_checks(report: DoctorReport) -> InstallError:
    parts = [f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in report.failures]
    return InstallError(
        "the host cannot run this bundle: " + "; ".join(parts),
        hint="'airpack doctor BUNDLE' shows every check",
    )


def cli_install(
    bundle: Path,
    keys: list[Path],
    options: TargetOptions,
    live: AbstractContextManager[tuple[Reporter, Event]],
    verify: Callable[[Path, list[Path], Reporter], VerifiedBundle],
) -> dict[str, Any]:
    """What ``airpack install --target compose|systemd|kubernetes`` calls: verify, then install."""
    with live as (reporter, event):
        event("verifying")
        return install_target(
            verify(bundle, keys, reporter), options, reporter=reporter, on_event=event
        ).to_dict()


def bundle_deploy_diff(bundle: Path, keys: Sequence[PublicKey]) -> dict[str, str]:
    """For ``airpack inspect --key``: per target the bundle has files for, the diff from the as-built defaults
    to an install with airpack's defaults (host network, an API key file). Nothing unverified is rendered: the
    signature and ``airpack.json`` are checked first (not the weights), and each deploy file against its signed
    hash, read capped and never through a link."""
    from airpack.verify import signed_root  # noqa: PLC0415

    m = signed_root(bundle, keys).manifest
    signed = {e.path.removeprefix("deploy/"): read_signed(bundle, e) for e in m.files if e.kind == "deploy"}
    gpus = int((m.spec.get("target") or {}).get("gpus") or 0)
    slug = re.sub(r"[^a-z0-9-]+", "-", m.name.lower()).strip("-")[:40].strip("-")
    out: dict[str, str] = {}
    for target in TARGETS:
        with contextlib.suppress(InstallError):
            chosen = tr.files_for(target, signed)
            registry = "registry.local" if target == "kubernetes" else None
            base = default_host_params(slug, gpus=gpus, registry="registry.invalid" if registry else None)
            params = dataclasses.replace(
                base, network="host", registry=registry, api_key_file=f"{base.prefix}/{host.API_KEY_FILE}"
            )
            out[target] = host_diff(chosen, params, base)
    return out


def render_text(r: dict[str, Any], show_diff: bool = False) -> str:
    """The human summary of a :class:`TargetResult` dict (the CLI prints it on stderr; a new key goes alone on
    stdout, never in this summary)."""
    lines = [
        f"{r['name']} {r['version']} at {r['prefix']}: {r['target']} files written"
        + (", started" if r["started"] else ", NOT started")
    ]
    if r["endpoint"] and r["started"]:
        lines.append(f"endpoint: {r['endpoint']}  (OpenAI-compatible; model {r['servedName']!r})")
    if s := r.get("smoke"):
        lines.append(f"smoke test: {s['completionTokens']} tokens, first token {s['ttftSeconds']} s")
    if r["apiKey"]:
        lines.append(f"API key (shown once, on stdout; stored in {r['apiKeyFile']})")
    elif r["apiKeyFile"]:
        lines.append(f"API key: unchanged, in {r['apiKeyFile']}")
    lines.append("deploy files: " + ", ".join(r["deployFiles"]))
    if r["commands"]:
        lines.append("run these to start it:")
        lines.extend(f"  {c}" for c in r["commands"])
    if r["alternativeCommands"]:
        lines.append("or, with podman (quadlet, podman >= 4.4):")
        lines.extend(f"  {c}" for c in r["alternativeCommands"])
    if show_diff:
        lines.append(r["deployDiff"].rstrip("\n") or "(no difference from the as-built defaults)")
    return "\n".join(lines)


__all__ = [
    "TARGETS",
    "TargetOptions",
    "TargetResult",
    "bundle_deploy_diff",
    "cli_install",
    "install_target",
    "plan",
    "render_text",
]
