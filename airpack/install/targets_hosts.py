"""``install --target kubernetes``: write the rendered manifests per version, apply them where this host can
(``kubectl`` with ``--apply``), else return the commands; rollback and uninstall of a kubernetes prefix.
(The systemd target lives in :mod:`airpack.install.targets_systemd`.)
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.install import audit, host, lifecycle, manage, versions
from airpack.install import targets_run as tr
from airpack.install.targets_common import (
    KEY_MANIFEST,
    Event,
    Plan,
    TargetResult,
    result,
)
from airpack.progress import Reporter


def kubernetes_install(p: Plan, reporter: Reporter) -> TargetResult:
    """One folder per version under ``versions/<id>/`` (weights for the ``hostPath`` volume, which reads them at
    the same path on the node, and the manifests with the key's Secret); the record names the active and the
    previous version, so ``airpack rollback`` can print (or run) the commands that apply the previous files.
    ``kubectl apply`` runs only with ``--apply`` and where kubectl exists."""
    m, v, prefix = p.verified.manifest, p.verified, p.prefix
    vid = versions.version_id(m.version, v.sums_sha256)
    with versions.locked(prefix):
        audit.append(prefix, audit.entry("verify", name=m.name, version=m.version, digest=v.sums_sha256,
                                         key_fingerprint=v.key_fingerprint, bundle=str(v.path)))
        record, current = lifecycle.settle(prefix, m.name, target="kubernetes")
        if current is None or record is None or record.active != vid:
            host.check_upgrade(current, m.name, m.version, allow_downgrade=p.options.allow_downgrade)
        key_file, new_key = host.ensure_api_key(prefix) if p.options.api_key else (None, None)
        files = dict(p.rendered)
        if key_file is not None:
            files[KEY_MANIFEST] = tr.api_key_secret(p.ctx.slug, host.read_api_key(key_file))
        vdir = versions.version_dir(prefix, vid)
        if versions.read_version(prefix, vid) is None:  # new: weights (re-hashed) and files, then renamed
            versions.clean_partials(prefix)
            versions.stage(prefix, vid, v, files, reporter, private=frozenset({KEY_MANIFEST}))
        else:  # installed already (kept or active): its weights stay where the node reads them
            host.write_deploy(vdir, files, private=frozenset({KEY_MANIFEST}))
        folder = prefix / host.DEPLOY_DIR / "kubernetes"  # the active version's, through ``current``
        applied = False
        commands = [tr.push_command(v.path, str(p.options.registry)), *tr.kubectl_commands(folder)]
        state = host.InstallState(
            name=m.name, version=m.version, digest=v.sums_sha256, key_fingerprint=v.key_fingerprint,
            target="kubernetes", endpoint="", container_id="", container_name=f"deployment/{p.ctx.slug}",
            image_id=p.image_id, image_tags=(), bind=p.params.bind, port=p.params.port, network=p.params.network,
            api_key_file=str(key_file) if key_file else None, installed=versions.now(),
            extra={"prefix": str(prefix), "servedName": p.ctx.served_name, "versionId": vid,
                   "registry": p.options.registry, "manifests": str(vdir / host.DEPLOY_DIR / "kubernetes"),
                   "deployment": p.ctx.slug, "applied": False})
        versions.write_version(prefix, vid, state)
        rec = record or versions.Record(name=m.name)
        previous = rec.active if rec.active and rec.active != vid else rec.previous
        lifecycle.commit(prefix, replace(rec, active=vid, previous=None if previous == vid else previous,
                                         pending=None, extra={**rec.extra, "target": "kubernetes"}))
        if p.options.apply and shutil.which("kubectl"):
            for argv in tr.kubectl_commands(folder):
                tr.run(argv)
            applied, commands = True, []
            versions.write_version(prefix, vid, replace(state, extra={**state.extra, "applied": True}))
        op = "install" if current is None or record is None or record.active == vid else "upgrade"
        audit.append(prefix, audit.entry(op, name=m.name, version=m.version, digest=v.sums_sha256,
                                         key_fingerprint=v.key_fingerprint, applied=applied,
                                         previous=current.version if current and record and record.active != vid
                                         else None))
        pruned = manage.prune(prefix, p.options.keep, None)
    written = [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(files)]
    return result(
        p,
        written,
        started=applied,
        new_key=new_key,
        key_file=key_file,
        commands=commands,
        extra={"registry": p.options.registry, "applied": applied, "versionId": vid, "pruned": pruned,
               "previousVersion": current.version if current and current.extra.get("versionId") != vid else None},
    )


def kubernetes_rollback(prefix: Path, record: versions.Record, say: Event) -> dict[str, Any]:
    """Make the previous version active again: ``kubectl apply -f`` its own manifests (run when kubectl exists
    and the active version was applied by airpack; printed otherwise), ``kubectl rollout undo`` as the
    alternative. The record is swapped either way: it names the files that should be applied."""
    rb = versions.rollback_pair(prefix, record)
    record, active, target = rb.record, rb.active, rb.target
    commands, alternatives = rollback_commands(prefix, rb.previous_id, target)
    applied = bool(active.extra.get("applied")) and shutil.which("kubectl") is not None
    if applied:
        for argv in commands:
            say(tr.shell_line(argv))
            tr.run(argv)
    lifecycle.commit(prefix, replace(record, active=rb.previous_id, previous=rb.active_id, pending=None))
    if applied:  # otherwise the commands are in the result (the CLI prints them)
        versions.write_version(prefix, rb.previous_id, replace(target, extra={**target.extra, "applied": True}))
    audit.append(prefix, audit.entry("rollback", name=target.name, version=target.version, digest=target.digest,
                                     key_fingerprint=target.key_fingerprint, previous=active.version,
                                     applied=applied))
    return {"prefix": str(prefix), "name": target.name, "version": target.version,
            "previousVersion": active.version, "endpoint": None, "containerName": target.container_name,
            "target": "kubernetes", "applied": applied,
            "commands": [] if applied else [tr.shell_line(c) for c in commands],
            "alternativeCommands": [tr.shell_line(c) for c in alternatives]}


def rollback_commands(prefix: Path, vid: str, st: host.InstallState) -> tuple[list[list[str]], list[list[str]]]:
    """Apply the previous version's own manifests; or let Kubernetes undo the last rollout of the Deployment."""
    folder = versions.version_dir(prefix, vid) / host.DEPLOY_DIR / "kubernetes"
    deployment = str(st.extra.get("deployment") or st.container_name.removeprefix("deployment/"))
    return [["kubectl", "apply", "-f", str(folder)]], [["kubectl", "rollout", "undo", f"deployment/{deployment}"]]


def delete_commands(prefix: Path, record: versions.Record,
                    states: dict[str, host.InstallState]) -> tuple[list[list[str]], bool]:
    """``uninstall --all``: ``kubectl delete -f`` the active version's manifests (what the cluster was told to
    run), and whether to run it here: kubectl exists and airpack applied that version (``--apply``).

    Every version's manifests name the same Deployment, Service, Secret and NetworkPolicy, so deleting the
    files of a version that is not active would take the active one down: ``uninstall --version`` deletes
    nothing in the cluster."""
    st = states.get(record.active or "")
    if st is None:
        return [], False
    folder = versions.version_dir(prefix, record.active or "") / host.DEPLOY_DIR / "kubernetes"
    return tr.kubectl_delete_commands(folder), bool(st.extra.get("applied")) and shutil.which("kubectl") is not None
