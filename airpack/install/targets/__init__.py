"""The install targets by name: the one place that lists them (``--target``). Each is a
:class:`~airpack.install.targets.base.Target`; the lifecycle core looks its target up here (from the option, the
prefix's record or a version's state) and never branches on a name."""

from __future__ import annotations

from airpack.errors import UsageError
from airpack.install.host import InstallState
from airpack.install.targets.base import Target
from airpack.install.targets.compose import Compose
from airpack.install.targets.docker import Docker
from airpack.install.targets.kubernetes import Kubernetes
from airpack.install.targets.systemd import Systemd
from airpack.install.versions import Record

TARGETS: dict[str, Target] = {t.name: t for t in (Docker(), Compose(), Systemd(), Kubernetes())}
NAMES = tuple(TARGETS)
DEFAULT = "docker"  # a record without a ``target`` key was written by the docker target


def get(name: str) -> Target:
    """The target called ``name`` (``--target``); UsageError (exit 2) for any other name."""
    try:
        return TARGETS[name]
    except KeyError:
        hint = "a Helm chart is rendered, not installed: airpack render --target helm" if name == "helm" else None
        raise UsageError(f"--target {name!r} is not one of {', '.join(NAMES)}", hint=hint) from None


def of_record(record: Record | None) -> Target:
    """The target that runs a prefix's versions (docker when nothing is recorded)."""
    return get(str(record.extra.get("target") or DEFAULT) if record is not None else DEFAULT)


def of_state(st: InstallState) -> Target:
    """The target that runs one installed version."""
    return get(st.target)


def taking(flag: str) -> list[str]:
    """The targets an install flag applies to."""
    return [name for name, t in TARGETS.items() if flag in t.flags]


__all__ = ["NAMES", "TARGETS", "Target", "get", "of_record", "of_state", "taking"]
