"""``install --target kubernetes``: nothing runs on this host, so there is no health check and no journal. Each
version is a folder under ``versions/<id>/``: weights for the ``hostPath`` volume (which reads them at the same
path on the node) and the manifests rendered for ``--registry`` with the API key's Secret. ``kubectl apply`` runs
with ``--apply`` where kubectl exists; otherwise the commands are returned. The record names the active and the
previous version, so ``airpack rollback`` gives (or runs) the ``kubectl apply`` of the previous version's files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from airpack._fs import atomic_write_bytes
from airpack.bundle_layout import MODEL_DIR
from airpack.errors import AirpackError, InstallError
from airpack.install import host, versions
from airpack.install.doctor import DoctorReport
from airpack.install.health import SmokeResult
from airpack.install.results import InstallResult, RollbackResult
from airpack.install.targets import commands as tr
from airpack.install.targets import common
from airpack.install.targets.base import Done, Plan, Removal
from airpack.install.versions import Pending, Record, Rollback
from airpack.oci.reference import model_repository, site_reference
from airpack.progress import Event, Reporter

KEY_MANIFEST = "kubernetes/secret-api-key.yaml"  # the Secret that holds the API key


def manifests(prefix: Path, vid: str) -> Path:
    return versions.version_dir(prefix, vid) / host.DEPLOY_DIR / "kubernetes"


def rollback_commands(prefix: Path, vid: str, st: host.InstallState) -> tuple[list[list[str]], list[list[str]]]:
    """Apply the previous version's own manifests; or let Kubernetes undo the last rollout of the Deployment."""
    folder = manifests(prefix, vid)
    deployment = str(st.extra.get("deployment") or st.container_name.removeprefix("deployment/"))
    return [["kubectl", "apply", "-f", str(folder)]], [["kubectl", "rollout", "undo", f"deployment/{deployment}"]]


def delete_commands(prefix: Path, record: Record,
                    states: dict[str, host.InstallState]) -> tuple[list[list[str]], bool]:
    """``uninstall --all``: ``kubectl delete -f`` the active version's manifests (what the cluster was told to
    run), and whether to run it here: kubectl exists and airpack applied that version (``--apply``).

    Every version's manifests name the same Deployment, Service, Secret and NetworkPolicy, so deleting the
    files of a version that is not active would take the active one down: ``uninstall --version`` deletes
    nothing in the cluster."""
    st = states.get(record.active or "")
    if st is None:
        return [], False
    folder = manifests(prefix, record.active or "")
    return tr.kubectl_delete_commands(folder), bool(st.extra.get("applied")) and shutil.which("kubectl") is not None


def _images(doc: Any) -> Iterator[str]:
    """Every ``image:`` of a container (or init container) in a Kubernetes document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _images(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _images(item)


def check_images(rendered: Mapping[str, bytes], registry: str, images: Iterable[Mapping[str, Any]],
                 also: Iterable[str] = ()) -> None:
    """Every image the rendered manifests name is one ``airpack push --registry`` puts in the site registry
    (the one naming rule, :func:`airpack.oci.reference.site_reference`; ``also``: the weights image it pushes
    beside the model): refused before anything is written."""
    pushed = {site_reference(registry, str(i["repository"]), str(i.get("manifestDigest") or i["digest"]))
              for i in images} | set(also)
    for rel, data in sorted(rendered.items()):
        if not rel.endswith(".yaml"):
            continue
        for ref in (r for doc in yaml.safe_load_all(data) for r in _images(doc)):
            if ref not in pushed:
                raise InstallError(f"deploy/{rel} names image {ref}, which 'airpack push --registry {registry}' "
                                   "does not push", hint="the bundle was built by an airpack that named site-registry "
                                   "images by their source host: rebuild it with this one")


class Kubernetes:
    name = "kubernetes"
    local_engine = False
    container_engine = False
    journaled = False
    model_updates = False
    flags = frozenset({"--registry", "--apply", "--show-diff", "--weights"})
    needs_registry = True

    def deploy_files(self, signed: Mapping[str, bytes]) -> dict[str, bytes]:
        return common.files_with(self.name, signed, ("kubernetes/",), "kubernetes/")

    def check_host(self) -> None:
        return None

    def record_extra(self, plan: Plan) -> dict[str, Any]:
        return {"target": self.name}

    def record_fields(self, active: host.InstallState | None) -> dict[str, Any]:
        return {}

    def again(self, plan: Plan, current: host.InstallState, client: Any, report: DoctorReport | None,
              say: Event) -> InstallResult | None:
        return None  # the files are written again (and applied with --apply), as for any version

    def clear(self, plan: Plan, client: Any) -> None:
        return None

    def stage(self, plan: Plan, current: host.InstallState | None, client: Any, reporter: Reporter,
              phase: Callable[[str], None]) -> list[str]:
        """A new version: weights (re-hashed) and files, then renamed; one installed already (kept or active)
        keeps its weights where the node reads them and gets its files again."""
        check_images(plan.rendered, str(plan.params.registry), plan.verified.manifest.images,
                     also=[f"{plan.params.registry}/{model_repository('', plan.ctx.name)}@{d}"
                           for d in (plan.params.weights_digest,) if d])
        # The nodes read the weights here only with host-path; otherwise from the site registry. A version
        # installed before without them (image-volume) gets them when it is installed again with host-path.
        host_path = plan.params.weights == "host-path"
        folder = versions.version_dir(plan.prefix, plan.vid)
        if versions.read_version(plan.prefix, plan.vid) is None or (host_path and not (folder / MODEL_DIR).is_dir()):
            versions.clean_partials(plan.prefix)
            versions.stage(plan.prefix, plan.vid, plan.verified, plan.rendered, reporter, weights=host_path)
        else:
            host.write_deploy(folder, plan.rendered)
        return []

    def start(self, plan: Plan, tags: list[str], key_file: Path | None, client: Any,
              current: host.InstallState | None, say: Event) -> host.InstallState:
        """Nothing starts here: the key's Secret joins the manifests; ``kubectl apply`` follows the commit."""
        m, v, prefix = plan.verified.manifest, plan.verified, plan.prefix
        folder = manifests(prefix, plan.vid)
        if key_file is not None:
            atomic_write_bytes(folder.parent / KEY_MANIFEST,
                               tr.api_key_secret(plan.ctx.slug, host.read_api_key(key_file),
                                                 plan.ctx.kubernetes.namespace), mode=0o600)
        return host.InstallState(
            name=m.name, version=m.version, digest=v.sums_sha256, key_fingerprint=v.key_fingerprint,
            target=self.name, endpoint="", container_id="", container_name=f"deployment/{plan.ctx.slug}",
            image_id=plan.image_id, image_tags=(), bind=plan.params.bind, port=plan.params.port,
            network=plan.params.network, api_key_file=str(key_file) if key_file else None, installed=versions.now(),
            extra={"prefix": str(prefix), "servedName": plan.ctx.served_name, "versionId": plan.vid,
                   "weights": plan.params.weights,
                   "registry": plan.params.registry, "manifests": str(folder), "deployment": plan.ctx.slug,
                   "applied": False})

    def check(self, st: host.InstallState, client: Any, say: Event,
              on_healthy: Callable[[], None] | None = None) -> SmokeResult | None:
        return None  # the cluster runs it: airpack does not wait for the rollout

    def finish(self, plan: Plan, st: host.InstallState) -> host.InstallState:
        """``--apply`` where kubectl exists: ``kubectl apply`` the active version's manifests (through
        ``current``)."""
        if not (plan.apply and shutil.which("kubectl")):
            return st
        for argv in tr.kubectl_commands(plan.prefix / host.DEPLOY_DIR / "kubernetes"):
            tr.run(argv)
        st = replace(st, extra={**st.extra, "applied": True})
        versions.write_version(plan.prefix, plan.vid, st)
        return st

    def audit_fields(self, st: host.InstallState) -> dict[str, Any]:
        return {"applied": bool(st.extra.get("applied"))}

    def result(self, done: Done) -> InstallResult:
        plan, st = done.plan, done.state
        applied = bool(st.extra.get("applied"))
        written = sorted([*plan.rendered, *((KEY_MANIFEST,) if done.key_file is not None else ())])
        folder = plan.prefix / host.DEPLOY_DIR / "kubernetes"  # the active version's, through ``current``
        commands = [] if applied else [tr.push_command(plan.verified.path, str(plan.params.registry),
                                                       weights_image=plan.params.weights == "init-copy"),
                                       *tr.kubectl_commands(folder)]
        previous = done.current.version if done.current and done.current.extra.get("versionId") != plan.vid else None
        return common.files_result(plan, st, started=applied, new_key=done.new_key, key_file=done.key_file,
                                   files=[f"{host.DEPLOY_DIR}/{rel}" for rel in written], endpoint=False,
                                   commands=commands,
                                   extra={"registry": plan.params.registry, "applied": applied,
                                          "weights": plan.params.weights,
                                          "versionId": plan.vid, "previousVersion": previous})

    def last_logs(self, client: Any, st: host.InstallState) -> str:
        return ""

    def failed_switch(self, message: str, logs: str, outcome: str) -> tuple[str, str]:
        return f"{message}; {outcome}", f"{message}; {outcome}"

    def restore_outcome(self, record: Record, source: str | None, restored: bool) -> str:
        return common.restore_outcome(record, source, restored)

    # ---- the lifecycle of installed versions -------------------------------------------------------------
    def lifecycle_client(self, client: Any) -> Any:
        return client  # nothing of it runs in this host's engine

    def stop(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> None:
        return None  # every version's manifests name the same objects: the next apply replaces them

    def resume(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> host.InstallState:
        versions.point_current(prefix, vid)
        return st

    def undo_new(self, prefix: Path, record: Record, pending: Pending, client: Any) -> None:
        return None

    def failure(self, client: Any, st: host.InstallState, exc: AirpackError) -> str:
        return exc.message

    def switches_here(self) -> bool:
        return False

    def rollback_elsewhere(self, prefix: Path, rb: Rollback, say: Event) -> tuple[RollbackResult, dict[str, Any]]:
        """``kubectl apply -f`` the previous version's own manifests (run when kubectl exists and the active
        version was applied by airpack; returned otherwise), ``kubectl rollout undo`` as the alternative. The
        record is swapped either way: it names the files that should be applied."""
        active, target = rb.active, rb.target
        commands, alternatives = rollback_commands(prefix, rb.previous_id, target)
        applied = bool(active.extra.get("applied")) and shutil.which("kubectl") is not None
        if applied:
            for argv in commands:
                say(tr.shell_line(argv))
                tr.run(argv)
            versions.write_version(prefix, rb.previous_id, replace(target, extra={**target.extra, "applied": True}))
        return RollbackResult(
            prefix=str(prefix), name=target.name, version=target.version, previous_version=active.version,
            endpoint=None, container_name=target.container_name, target=self.name, applied=applied,
            commands=() if applied else tuple(tr.shell_line(c) for c in commands),
            alternatives=tuple(tr.shell_line(c) for c in alternatives)), {"applied": applied}

    def remove(self, prefix: Path, vid: str, st: host.InstallState, client: Any) -> Removal:
        return Removal()  # every version's manifests name the same objects: deleting these would take the active down

    def remove_all(self, prefix: Path, record: Record | None, states: dict[str, host.InstallState],
                   client: Any) -> Removal:
        """``kubectl delete`` where airpack applied the active version and kubectl exists (a failure keeps the
        manifests, to delete with them later), else the command is returned."""
        commands, here = delete_commands(prefix, record, states) if record is not None else ([], False)
        for argv in commands if here else ():
            tr.run(argv)
        lines = tuple(tr.shell_line(c) for c in commands)
        return Removal(ran=lines if here else (), commands=() if here else lines, errors=(), target=self.name,
                       audit={"ran": bool(commands) and here})
