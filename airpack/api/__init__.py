"""airpack's public library API: one function per command, the command line being a thin shell over it.

Build side (the connected machine)::

    load_spec → lock → build → sign            (keygen makes the key pair; plan says whether it fits)

Either side of the gap::

    verify → split → (carry) → join → verify

Far side, on the host (from :mod:`airpack.install`, loaded on first use)::

    install → status → rollback → uninstall        (render: the deploy files alone, for GitOps)

Every verb takes paths, keys and typed options, never prints, reports progress only through the
:class:`~airpack.progress.Reporter` passed as ``reporter`` (default: none), raises
:class:`~airpack.errors.AirpackError` subclasses (``exit_code`` says which class of failure), and returns a frozen
dataclass whose ``to_dict()`` is exactly the ``data`` of ``airpack <verb> --json``. ``docs/library.md`` shows
each one, with examples the tests run.
"""

from __future__ import annotations

from typing import Any

from airpack.api.build_side import (
    PIP_DEFAULT,
    BuildResult,
    KeygenResult,
    LockResult,
    SignResult,
    build,
    fit_error,
    keygen,
    load_spec,
    lock,
    plan,
    sign,
    signing_key,
    trusted_keys,
)
from airpack.api.bundles import (
    InspectResult,
    JoinResult,
    SplitResult,
    SplitVolume,
    VerifyResult,
    VolumeVerifyResult,
    inspect,
    join,
    split,
    verify,
)

# The install verbs live in airpack.install (the Target pipeline); named here too, imported on first use so that
# `import airpack.api` (and the CLI's start-up) does not load the install stage.
_INSTALL = ("InstallOptions", "InstallResult", "RollbackResult", "StatusReport", "UninstallResult", "install",
            "rollback", "status", "uninstall")
_RENDER = ("RenderOptions", "RenderResult", "render")


def __getattr__(name: str) -> Any:
    if name in _INSTALL:
        import airpack.install  # noqa: PLC0415

        return getattr(airpack.install, name)
    if name in _RENDER:
        from airpack.install import render_files  # noqa: PLC0415

        return getattr(render_files, name)
    raise AttributeError(f"module 'airpack.api' has no attribute {name!r}")


__all__ = [
    "PIP_DEFAULT",
    "BuildResult",
    "InspectResult",
    "InstallOptions",
    "InstallResult",
    "JoinResult",
    "KeygenResult",
    "LockResult",
    "RenderOptions",
    "RenderResult",
    "RollbackResult",
    "SignResult",
    "SplitResult",
    "SplitVolume",
    "StatusReport",
    "UninstallResult",
    "VerifyResult",
    "VolumeVerifyResult",
    "build",
    "fit_error",
    "inspect",
    "install",
    "join",
    "keygen",
    "load_spec",
    "lock",
    "plan",
    "render",
    "rollback",
    "sign",
    "signing_key",
    "split",
    "status",
    "trusted_keys",
    "uninstall",
    "verify",
]
