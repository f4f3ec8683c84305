"""Install a verified bundle on this host, and report on, roll back or remove what was installed.

The public API: :func:`install` (:mod:`airpack.install.pipeline`, the one lifecycle core for every target),
:func:`rollback` (:mod:`airpack.install.lifecycle`), :func:`status` (:mod:`airpack.install.status`) and
:func:`uninstall` (:mod:`airpack.install.remove`), each returning a frozen result
(:mod:`airpack.install.results`) with ``to_dict()`` for ``--json``. The targets (docker, compose, systemd,
kubernetes) are in :mod:`airpack.install.targets`; the layout of a prefix in :mod:`airpack.install.versions`.
"""

from __future__ import annotations

from airpack.install.health import SmokeResult
from airpack.install.lifecycle import rollback
from airpack.install.options import InstallOptions
from airpack.install.pipeline import install
from airpack.install.remove import uninstall
from airpack.install.results import InstallResult, RollbackResult, StatusReport, UninstallResult
from airpack.install.status import status

__all__ = ["InstallOptions", "InstallResult", "RollbackResult", "SmokeResult", "StatusReport", "UninstallResult",
           "install", "rollback", "status", "uninstall"]
