"""airpack's public library API: one function per command, the command line being a thin shell over it.

Build side (the connected machine)::

    load_spec → lock → build → sign            (keygen makes the key pair; plan says whether it fits)

Either side of the gap::

    verify → split → (carry) → join → verify → airpack.install.install

Every verb takes paths, keys and typed options, never prints, reports progress only through the
:class:`~airpack.progress.Reporter` passed as ``reporter`` (default: none), raises
:class:`~airpack.errors.AirpackError` subclasses (``exit_code`` says which class of failure), and returns a frozen
dataclass whose ``to_dict()`` is exactly the ``data`` of ``airpack <verb> --json``. ``docs/library.md`` shows
each one, with examples the tests run.
"""

from __future__ import annotations

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

__all__ = [
    "PIP_DEFAULT",
    "BuildResult",
    "InspectResult",
    "JoinResult",
    "KeygenResult",
    "LockResult",
    "SignResult",
    "SplitResult",
    "SplitVolume",
    "VerifyResult",
    "VolumeVerifyResult",
    "build",
    "fit_error",
    "inspect",
    "join",
    "keygen",
    "load_spec",
    "lock",
    "plan",
    "sign",
    "signing_key",
    "split",
    "trusted_keys",
    "verify",
]
