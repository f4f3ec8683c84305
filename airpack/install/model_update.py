"""A model-only bundle (a spec without ``runtime``) is a **model update**: installed on a prefix where a bundle of
the same name runs, it becomes a new version that serves the new weights with the active version's runtime
(engine, image, arguments, served name, target), through the same switch, health check and smoke test as any
upgrade; ``airpack rollback`` goes back to the previous weights. On a prefix where nothing of that name runs
there is no engine to give the weights to, and the install is refused (exit 2).

Every install records what a later model update needs (the spec it ran, its locked images and the manifest's
image entries) in the version's state, under :data:`RUNTIME_KEY`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from airpack.errors import RefusedError
from airpack.install.host import InstallState
from airpack.lock import Lock, LockedImage
from airpack.spec import Spec, parse_spec
from airpack.verify import VerifiedBundle

RUNTIME_KEY = "runtimeFrom"


@dataclass(frozen=True)
class Runtime:
    """What the version being installed runs: its spec (as a document and parsed), lock and image entries."""

    spec_doc: dict[str, Any]
    spec: Spec
    lock: Lock
    images: list[dict[str, Any]]
    update_of: str | None = None  # the version whose runtime a model update reuses


def record(rt: Runtime) -> dict[str, Any]:
    """The state entry a later model update reads."""
    return {"spec": rt.spec_doc, "lockImages": [i.to_dict() for i in rt.lock.images], "images": rt.images}


def runtime_for(verified: VerifiedBundle, current: InstallState | None) -> Runtime:
    """The bundle's own runtime; for a model-only bundle, the active version's runtime with the new weights."""
    m = verified.manifest
    spec = parse_spec(m.spec, verified.path, check_paths=False)
    lock = Lock.from_dict(m.lock)
    if spec.runtime is not None:
        return Runtime(dict(m.spec), spec, lock, list(m.images))
    if current is None:
        raise RefusedError(f"{m.name} {m.version} is a model-only bundle (a model update), and no {m.name} runs "
                           "at this prefix to take its weights",
                           hint=f"install a bundle of {m.name} with a runtime here first, then this one")
    saved = current.extra.get(RUNTIME_KEY)
    if not isinstance(saved, dict) or not isinstance(saved.get("spec"), dict):
        raise RefusedError(f"{m.name} {m.version} is a model update, but {current.name} {current.version} here "
                           "was installed without the runtime record a model update needs",
                           hint="install that version's bundle again with this airpack, then this one")
    doc = {**saved["spec"], "name": m.spec["name"], "version": m.spec["version"], "model": m.spec["model"]}
    merged = parse_spec(doc, verified.path, check_paths=False)
    images = tuple(LockedImage.from_dict(i) for i in saved.get("lockImages") or ())
    return Runtime(doc, merged, replace(lock, images=images, plan=None, checks=()), list(saved.get("images") or ()),
                   update_of=current.version)
