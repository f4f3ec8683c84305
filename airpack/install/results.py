"""What install, status, uninstall and rollback return: frozen data the CLI renders as text, and ``to_dict()``
for ``--json`` (the documents scripts read; their keys do not change)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from airpack.install.doctor import DoctorReport
from airpack.install.host import InstallState
from airpack.install.versions import Pending


@dataclass(frozen=True)
class InstallResult:
    """An install or upgrade that committed.

    ``document`` says which JSON document it is: ``version`` (the version's state with the install's keys: a
    container airpack started itself) or ``files`` (the deploy files written, whether they were started, and the
    commands still to run)."""

    state: InstallState  # the version's record, as written
    prefix: str
    started: bool
    served_name: str
    deploy_files: tuple[str, ...]
    document: Literal["version", "files"] = "files"
    deploy_diff: str = ""
    commands: tuple[str, ...] = ()  # what the operator still has to run (nothing when started)
    alternatives: tuple[str, ...] = ()
    api_key: str | None = None  # only when made by this install: it is shown once
    api_key_file: str | None = None
    endpoint: str | None = None
    smoke: dict[str, Any] | None = None
    pruned: tuple[str, ...] | None = ()  # version ids removed by --keep (None: not reported)
    doctor: DoctorReport | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # the target's own keys (files document)

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def version(self) -> str:
        return self.state.version

    @property
    def target(self) -> str:
        return self.state.target

    def to_dict(self) -> dict[str, Any]:
        if self.document == "version":
            return {**self.state.to_dict(), "apiKey": self.api_key, "pruned": list(self.pruned or ()),
                    "deployFiles": list(self.deploy_files),
                    "doctor": self.doctor.to_dict() if self.doctor else None,
                    "timings": {k: round(v, 4) for k, v in self.timings.items()}}
        pruned = {"pruned": list(self.pruned)} if self.pruned is not None else {}
        return {**self.extra, **pruned, "target": self.target, "name": self.name, "version": self.version,
                "prefix": self.prefix, "started": self.started, "servedName": self.served_name,
                "deployFiles": list(self.deploy_files), "deployDiff": self.deploy_diff,
                "commands": list(self.commands), "alternativeCommands": list(self.alternatives),
                "apiKey": self.api_key, "apiKeyFile": self.api_key_file, "endpoint": self.endpoint,
                "smoke": self.smoke}


@dataclass(frozen=True)
class VersionStatus:
    """One installed version, as ``status`` lists it."""

    id: str
    version: str
    digest: str
    installed: str
    container_name: str
    container: dict[str, Any] | None  # the engine's view (status, exit code, restarts); None: not looked at
    active: bool
    previous: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "digest": self.digest, "installed": self.installed,
                "containerName": self.container_name, "container": self.container, "active": self.active,
                "previous": self.previous}


@dataclass(frozen=True)
class StatusReport:
    """What is installed at a prefix and whether its active version answers now (read, never repaired)."""

    prefix: str
    state: InstallState  # the active version's
    container: dict[str, Any] | None
    health_status: int | None
    health_body: str
    active: str | None
    previous: str | None
    pending: Pending | None  # a switch that has not finished
    versions: tuple[VersionStatus, ...]
    pending_running: bool = False  # the command that journaled ``pending`` still runs (not in the document)

    @property
    def healthy(self) -> bool:
        return self.health_status == 200

    def to_dict(self) -> dict[str, Any]:
        st = self.state
        return {"prefix": self.prefix, "name": st.name, "version": st.version, "digest": st.digest,
                "endpoint": st.endpoint, "containerName": st.container_name, "containerId": st.container_id,
                "container": self.container, "healthy": self.healthy,
                "health": {"url": st.health_url, "status": self.health_status, "body": self.health_body},
                "installed": st.installed, "smoke": st.smoke, "apiKeyFile": st.api_key_file,
                "active": self.active, "previous": self.previous,
                "pending": self.pending.to_dict() if self.pending else None,
                "versions": [v.to_dict() for v in self.versions], "target": st.target,
                "unit": st.extra.get("unit")}


@dataclass(frozen=True)
class UninstallResult:
    """What ``uninstall`` removed, and the commands it could not run here."""

    prefix: str
    name: str | None
    containers_removed: tuple[str, ...] = ()
    compose_projects_down: tuple[str, ...] = ()
    images_removed: tuple[str, ...] = ()
    files_removed: tuple[str, ...] = ()
    weights_kept: bool = True
    versions_removed: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    ran: tuple[str, ...] = ()
    target: str | None = None  # named for a target whose versions run outside the engine
    command_errors: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prefix": self.prefix, "name": self.name, "containersRemoved": list(self.containers_removed),
            "composeProjectsDown": list(self.compose_projects_down), "commands": list(self.commands),
            "alternativeCommands": list(self.alternatives), "ran": list(self.ran),
            "imagesRemoved": list(self.images_removed), "filesRemoved": list(self.files_removed),
            "weightsKept": self.weights_kept, "versionsRemoved": list(self.versions_removed)}
        if self.target is not None:
            out["target"] = self.target
        if self.command_errors is not None:
            out["commandErrors"] = list(self.command_errors)
        return out


@dataclass(frozen=True)
class RollbackResult:
    """The version a rollback made active, and the commands that switch to it where nothing ran here."""

    prefix: str
    name: str
    version: str
    previous_version: str
    endpoint: str | None
    container_name: str
    target: str
    commands: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    started: bool | None = None  # None: not reported (nothing of it runs on this host)
    smoke: dict[str, Any] | None = None
    unit: str | None = None
    applied: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prefix": self.prefix, "name": self.name, "version": self.version,
            "previousVersion": self.previous_version, "endpoint": self.endpoint,
            "containerName": self.container_name, "target": self.target, "commands": list(self.commands),
            "alternativeCommands": list(self.alternatives)}
        more = {"started": self.started, "smoke": self.smoke, "unit": self.unit, "applied": self.applied}
        return out | {key: value for key, value in more.items() if value is not None}
