"""The build side's verbs (the connected machine): ``keygen``, ``lock``, ``build``, ``sign``, ``plan``.

Each takes paths, keys and typed options, never prints, reports progress only through the
:class:`~airpack.progress.Reporter` it is given, raises :class:`~airpack.errors.AirpackError`, and returns a
frozen dataclass whose ``to_dict()`` is the ``data`` of ``airpack <verb> --json``.

The stages are imported inside the verbs: every command (``airpack --help`` too) imports this module, the far
side's tool/ lacks the build-only packages, and a verb pays only for what it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airpack.errors import CompatibilityError
from airpack.progress import Reporter
from airpack.tool import WheelSource

if TYPE_CHECKING:
    from airpack.lock import Lock
    from airpack.plan import Plan
    from airpack.signing import PrivateKey, PublicKey
    from airpack.spec import Spec

PIP_DEFAULT = WheelSource()  # the tool's wheels from pip's own configuration (what ``airpack build`` does)


def load_spec(path: Path) -> Spec:
    """Read and validate a spec (``airpack.yaml``); every problem is a ``SpecError`` naming the file."""
    from airpack.spec import load_spec as _load  # noqa: PLC0415

    return _load(path)


def trusted_keys(keys: Sequence[Path | PublicKey]) -> list[PublicKey]:
    """Public keys as given, or loaded: each file, and every ``*.pub`` of each folder (a trust store)."""
    from airpack.keys import load_trusted  # noqa: PLC0415

    paths = [k for k in keys if isinstance(k, Path)]
    return [*(load_trusted(paths) if paths else []), *(k for k in keys if not isinstance(k, Path))]


def signing_key(key: Path | str | PrivateKey, passphrase_env: str | None = None) -> PrivateKey:
    """A private key as given, or loaded from a PEM file (``passphrase_env``: the variable holding its
    passphrase) or a PKCS#11 token (``pkcs11:`` URI)."""
    from airpack.keys import load_signing_key  # noqa: PLC0415

    if isinstance(key, Path | str):
        return load_signing_key(key, passphrase_env=passphrase_env)
    return key


def _cache(cache_dir: Path | None) -> Path:
    from airpack.cache import cache_dir as default  # noqa: PLC0415

    return cache_dir if cache_dir is not None else default()


# ------------------------------------------------------------------------------------------------ keygen


@dataclass(frozen=True)
class KeygenResult:
    """A new key pair: ``private_key`` is a file (mode 0600) or a ``pkcs11:`` URI; ``where`` says which."""

    private_key: str
    where: str
    public_key: Path
    fingerprint: str
    algorithm: str

    def to_dict(self) -> dict[str, Any]:
        return {"private_key": self.private_key, "where": self.where, "public_key": str(self.public_key),
                "fingerprint": self.fingerprint, "algorithm": self.algorithm}


def keygen(out: Path, *, name: str = "airpack", algorithm: str = "ecdsa-p256", passphrase_env: str | None = None,
           pkcs11: str | None = None) -> KeygenResult:
    """Make ``out/NAME.key`` and ``out/NAME.pub`` (``ecdsa-p256`` or ``ed25519``; the key encrypted with the
    passphrase in ``passphrase_env``), or with ``pkcs11`` (a URI) a pair inside that token and its ``.pub``."""
    from airpack.keys import make_key_pair  # noqa: PLC0415

    kp = make_key_pair(out, name=name, algorithm=algorithm, passphrase_env=passphrase_env, pkcs11=pkcs11)
    return KeygenResult(kp["private_key"], kp["where"], Path(kp["public_key"]), kp["fingerprint"], kp["algorithm"])


# -------------------------------------------------------------------------------------------------- lock


@dataclass(frozen=True)
class LockResult:
    """The lock written to ``path``: every file pinned, images by digest, the planner's checks."""

    path: Path
    lock: Lock

    @property
    def files(self) -> int:
        return len(self.lock.model.files)

    @property
    def bytes(self) -> int:
        return self.lock.model.total_size

    def to_dict(self) -> dict[str, Any]:
        return {"lock": str(self.path), "files": self.files, "bytes": self.bytes,
                "excluded": [{"path": e.path, "reason": e.reason} for e in self.lock.model.excluded],
                "images": [i.to_dict() for i in self.lock.images], "checks": list(self.lock.checks)}


def lock(spec_path: Path, *, out: Path | None = None, tool: WheelSource | None = PIP_DEFAULT,
         cache_dir: Path | None = None) -> LockResult:
    """Pin every file (size, sha256), the commit and each image digest, and check the model fits the target;
    write the lock to ``out`` (default: ``SPEC.lock`` beside the spec). ``tool``: where the wheels of the
    bundle's ``tool/`` come from; None leaves ``tool/`` out."""
    from airpack.lock import default_lock_path, write_lock  # noqa: PLC0415
    from airpack.locking import resolve  # noqa: PLC0415

    spec = load_spec(spec_path)
    locked = resolve(spec, cache_dir=_cache(cache_dir), tool=tool)
    path = out or default_lock_path(spec_path)
    write_lock(locked, path)
    return LockResult(path, locked)


# ------------------------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class BuildResult:
    """The bundle folder as published: ``files`` counts ``SHA256SUMS`` too (as ``verify`` does)."""

    bundle: Path
    name: str
    version: str
    files: int
    bytes: int
    sums_sha256: str
    signed_by: str | None
    tool: bool

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "name": self.name, "version": self.version, "files": self.files,
                "bytes": self.bytes, "sums_sha256": self.sums_sha256, "signed_by": self.signed_by,
                "tool": self.tool}


def build(spec_path: Path, out: Path, *, key: Path | str | PrivateKey | None = None,
          passphrase_env: str | None = None, lock_path: Path | None = None, force: bool = False,
          tool: WheelSource | None = PIP_DEFAULT, cache_dir: Path | None = None,
          reporter: Reporter | None = None) -> BuildResult:
    """Fetch everything the lock pins into the bundle folder ``out`` (it appears only when complete), locking
    first when there is no lock at ``lock_path`` (default: ``SPEC.lock``). With ``key``, sign at once. A lock
    made without the tool builds without ``tool/``; ``force`` replaces an existing bundle."""
    from airpack.bundle import build_bundle  # noqa: PLC0415
    from airpack.lock import check_lock_matches, default_lock_path, read_lock, write_lock  # noqa: PLC0415
    from airpack.locking import resolve  # noqa: PLC0415

    spec = load_spec(spec_path)
    private = signing_key(key, passphrase_env) if key is not None else None
    lp = lock_path or default_lock_path(spec_path)
    if lp.exists():
        locked = read_lock(lp)
        check_lock_matches(locked, spec, lp)
        tool = tool if locked.tool is not None else None  # a lock made without the tool (or before tool/): none
    else:
        locked = resolve(spec, cache_dir=_cache(cache_dir), tool=tool)
        write_lock(locked, lp)
    r = build_bundle(spec, locked, out, key=private, cache_dir=_cache(cache_dir), force=force, reporter=reporter,
                     tool=tool)
    return BuildResult(r.path, r.manifest.name, r.manifest.version, len(r.manifest.files) + 1, r.total_bytes,
                       r.sums_sha256, r.signed_by, tool is not None)


# -------------------------------------------------------------------------------------------------- sign


@dataclass(frozen=True)
class SignResult:
    """``signed_by``: the key's fingerprint; ``replaced``: the signer of the signature replaced (None: none)."""

    bundle: Path
    signed_by: str
    sums_sha256: str
    replaced: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "signed_by": self.signed_by, "sums_sha256": self.sums_sha256,
                "replaced": self.replaced}


def sign(bundle: Path, key: Path | str | PrivateKey, *, passphrase_env: str | None = None, force: bool = False,
         known: Sequence[Path | PublicKey] = (), reporter: Reporter | None = None) -> SignResult:
    """Sign a built bundle after checking every file against its ``SHA256SUMS``. An existing signature is
    replaced only with ``force``; ``known`` public keys name its signer."""
    from airpack.bundle_sign import sign_bundle  # noqa: PLC0415

    private = signing_key(key, passphrase_env)
    r = sign_bundle(bundle, private, force=force, known=trusted_keys(known), reporter=reporter)
    return SignResult(r.bundle, r.key_fingerprint, r.sums_sha256, r.replaced)


# -------------------------------------------------------------------------------------------------- plan


def plan(spec_path: Path, *, gpu: str | None = None, vram_gib: float | None = None, gpus: int | None = None,
         context: int | None = None, concurrency: int | None = None) -> Plan:
    """Will the model fit and run on the target? Each option replaces the spec's value (``gpus=0``: CPU and
    host RAM, ``vram_gib`` its size). A local model is read where it is, a Hub model by range reads of its
    metadata. ``Plan.ok`` is the verdict; :func:`fit_error` words a failing one. Raises ``CompatibilityError``
    when the target's memory is unknown."""
    from airpack.plan.spec import Overrides, plan_spec  # noqa: PLC0415

    o = Overrides(gpu=gpu, vram_gib=vram_gib, gpus=gpus, context=context, concurrency=concurrency)
    planned = plan_spec(load_spec(spec_path), o)
    if planned is None:
        raise CompatibilityError("the target's memory is unknown", hint="give --gpu NAME or --vram GIB "
                                 "(host RAM with --gpus 0), or target.gpu / target.vram in the spec")
    return planned


def fit_error(planned: Plan) -> CompatibilityError | None:
    """Why a plan fails (memory, or a failed check), as the error ``airpack plan`` exits with; None when ok."""
    p = planned.to_dict()
    failed = [f"{c['name']}: {c['message']}" for c in p["checks"] if c["status"] == "fail"]
    if p["fits"] and not failed:
        return None
    why = failed or [f"needs {p['required_bytes'] / 2**30:.2f} GiB of {p['available_bytes'] / 2**30:.2f} GiB"]
    return CompatibilityError("the model does not fit or run on the target: " + "; ".join(why))
