"""What an install target is: the :class:`Target` protocol the lifecycle core (:mod:`airpack.install.pipeline`,
:mod:`airpack.install.lifecycle`, :mod:`airpack.install.remove`) calls, and the plain data it is handed.

The core owns the order of things (lock, journal, commit, audit, undo on failure, pruning) and never asks which
target it drives; a target owns how one version is staged, started, checked, stopped, resumed and removed on
this host, and which commands it hands back when it cannot run them here (systemd not PID 1, no kubectl).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from airpack.errors import AirpackError
from airpack.install.doctor import DoctorReport
from airpack.install.health import SmokeResult
from airpack.install.host import InstallState
from airpack.install.model_update import Runtime
from airpack.install.results import InstallResult, RollbackResult
from airpack.install.versions import Pending, Record, Rollback
from airpack.profiles.context import DeployContext
from airpack.progress import Event, Reporter
from airpack.render import HostParams
from airpack.verify import VerifiedBundle

Commands = list[list[str]]


@dataclass(frozen=True)
class Plan:
    """Everything an install decided before the host is touched."""

    verified: VerifiedBundle
    prefix: Path
    vid: str  # the version's id: ``<version>-<12 hex of the bundle digest>``
    runtime: Runtime  # what the version runs (a model update: the active version's runtime)
    ctx: DeployContext
    params: HostParams
    rendered: dict[str, bytes]  # this target's deploy files, rendered for this host
    diff: str  # from the as-built defaults to ``rendered``
    image_id: str  # the runtime image's signed config digest
    health_timeout: float | None = None
    apply: bool = False

    @property
    def deploy_files(self) -> list[str]:
        return [f"deploy/{rel}" for rel in sorted(self.rendered)]


@dataclass(frozen=True)
class Done:
    """A switch that committed, for the target to describe."""

    plan: Plan
    state: InstallState
    current: InstallState | None  # the version that was active before
    new_key: str | None
    key_file: Path | None
    report: DoctorReport | None
    smoke: SmokeResult | None = None  # None: nothing runs on this host to test
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Removal:
    """What taking versions' runtime away did (containers, Compose projects) or would need (commands)."""

    containers: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()  # shell lines still to run (nothing ran them here)
    alternatives: tuple[str, ...] = ()
    ran: tuple[str, ...] = ()
    errors: tuple[str, ...] | None = None  # commands that failed but did not stop the removal
    target: str | None = None  # named in the result of a target that runs nothing through the engine
    audit: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    """One way of running an installed version. Implementations: :mod:`airpack.install.targets.docker`,
    ``compose``, ``systemd``, ``kubernetes``; the registry is :mod:`airpack.install.targets`."""

    name: str
    local_engine: bool  # install checks this host (doctor) and loads the images into its Docker engine
    container_engine: bool  # its versions run in containers: stop, resume, undo and remove need the engine
    journaled: bool  # an install switches what runs here under the journal; False: files and commands only
    model_updates: bool  # takes a model-only bundle (it runs on the active version's runtime)
    flags: frozenset[str]  # the install flags that apply to it beyond the common ones
    needs_registry: bool

    # ---- install --------------------------------------------------------------------------------------------
    def deploy_files(self, signed: Mapping[str, bytes]) -> dict[str, bytes]:
        """The bundle's ``deploy/`` files (relative to ``deploy/``) this target renders and writes."""

    def check_host(self) -> None:
        """What this target needs here beyond the doctor checks (Compose installed)."""

    def record_extra(self, plan: Plan) -> dict[str, Any]:
        """Keys the prefix's record keeps for this target (``target``, the unit, …)."""

    def record_fields(self, active: InstallState | None) -> dict[str, Any]:
        """Keys the record carries about the active version, for people (refreshed at every commit)."""

    def again(self, plan: Plan, current: InstallState, client: Any, report: DoctorReport | None,
              say: Event) -> InstallResult | None:
        """An install of the version that is active already; None: install it as any other version."""

    def clear(self, plan: Plan, client: Any) -> None:
        """A kept copy of the version being installed is replaced: what runs it goes first."""

    def stage(self, plan: Plan, current: InstallState | None, client: Any, reporter: Reporter,
              phase: Callable[[str], None]) -> list[str]:
        """Write the version's folder (weights re-hashed, deploy files) and load its images; the image tags."""

    def start(self, plan: Plan, tags: list[str], key_file: Path | None, client: Any,
              current: InstallState | None, say: Event) -> InstallState:
        """Start the staged version (or write what starts it elsewhere); its state, not yet written."""

    def check(self, st: InstallState, client: Any, say: Event,
              on_healthy: Callable[[], None] | None = None) -> SmokeResult | None:
        """Health, then one chat completion (HealthError when either fails); None where nothing runs here."""

    def finish(self, plan: Plan, st: InstallState) -> InstallState:
        """After the commit: what this target still runs (``kubectl apply``)."""

    def audit_fields(self, st: InstallState) -> dict[str, Any]:
        """Extra keys of the install's audit line."""

    def result(self, done: Done) -> InstallResult:
        """The install's result."""

    def last_logs(self, client: Any, st: InstallState) -> str:
        """The engine's last lines, read before a failed version is taken away."""

    def failed_switch(self, message: str, logs: str, outcome: str) -> tuple[str, str]:
        """A failed switch's error message and its audit reason."""

    def restore_outcome(self, record: Record, source: str | None, restored: bool) -> str:
        """What runs after a failed switch was undone."""

    # ---- the lifecycle of installed versions -------------------------------------------------------------
    def lifecycle_client(self, client: Any) -> Any:
        """The Docker client rollback, uninstall and undo need for this target's versions (maybe None)."""

    def stop(self, prefix: Path, vid: str, st: InstallState, client: Any, say: Event) -> None:
        """Stop a version and keep it, to be started again."""

    def resume(self, prefix: Path, vid: str, st: InstallState, client: Any, say: Event) -> InstallState:
        """Run a kept version again and check it (``current`` leads to it); its state with the new smoke test."""

    def undo_new(self, prefix: Path, record: Record, pending: Pending, client: Any) -> None:
        """Take away what a killed or failed switch to a new version started (its folder goes after)."""

    def failure(self, client: Any, st: InstallState, exc: AirpackError) -> str:
        """The reason a version failed, with the engine's last lines."""

    def switches_here(self) -> bool:
        """Whether a rollback can switch what runs on this host (else it returns the commands)."""

    def rollback_elsewhere(self, prefix: Path, rb: Rollback, say: Event) -> tuple[RollbackResult, dict[str, Any]]:
        """A rollback that cannot switch here: the commands (run where this host can), and the audit keys."""

    def remove(self, prefix: Path, vid: str, st: InstallState, client: Any) -> Removal:
        """Take one version's runtime away (it is not the active one)."""

    def remove_all(self, prefix: Path, record: Record | None, states: dict[str, InstallState],
                   client: Any) -> Removal:
        """Take every version's runtime away (``uninstall --all``)."""
