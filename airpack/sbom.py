"""The bundle's software bill of materials: CycloneDX 1.6 JSON, written into the bundle and signed with it.

What the bundle carries, as its lock pinned it: the model (a ``machine-learning-model`` component, with a
``pkg:huggingface`` purl at its commit for a Hub model) and each of its files (``file`` components with their
SHA-256), every container image (``container`` components, ``pkg:oci`` purls at their manifest digest) and, when
the bundle carries ``tool/``, airpack and every wheel it installs on the far side (``library`` components,
``pkg:pypi`` purls with the wheel's file name and SHA-256). The
BOM is an inventory from the lock: it does not list the packages inside the images (that needs an image
scanner such as syft, which has no maintained pure-Python equivalent). Serial number and timestamp derive from
the lock and the build time, so a rebuild of the same lock with the same ``SOURCE_DATE_EPOCH`` writes the same
bytes.
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, uuid5

from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import parse_wheel_filename

from airpack import __version__
from airpack.lock import Lock, LockedImage
from airpack.oci.reference import parse_reference
from airpack.tool import WHEELS_DIR, LockedTool

SBOM_PATH = "sbom/bom.cdx.json"


def _sha256(hexdigest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest.removeprefix("sha256:"))]


def _model(lock: Lock) -> Component:
    m = lock.model
    files = [Component(name=f"model/{f.path}", type=ComponentType.FILE, bom_ref=f"file:model/{f.path}",
                       hashes=_sha256(f.sha256)) for f in m.files]
    if m.source != "local" and m.repo:  # "hub" or "hf-cache"
        namespace, _, name = m.repo.rpartition("/")
        purl = PackageURL("huggingface", namespace or None, name, m.commit)
        return Component(name=m.repo, version=m.commit or "", type=ComponentType.MACHINE_LEARNING_MODEL,
                         bom_ref="model", purl=purl, components=files)
    return Component(name=(m.path or "model").rstrip("/").rsplit("/", 1)[-1], version="local",
                     type=ComponentType.MACHINE_LEARNING_MODEL, bom_ref="model", components=files)


def _image(i: int, img: LockedImage) -> Component:
    ref = parse_reference(img.ref)
    qualifiers = {"repository_url": f"{ref.registry}/{ref.repository}", "platform": img.platform}
    if img.tag:
        qualifiers["tag"] = img.tag
    # An image taken from the local engine (a custom build) has no registry manifest: its config digest (the
    # image ID) is what the lock pins.
    pinned = img.digest or img.config_digest
    purl = PackageURL("oci", None, ref.repository.rsplit("/", 1)[-1], pinned, qualifiers)
    return Component(name=f"{ref.registry}/{ref.repository}", version=pinned, type=ComponentType.CONTAINER,
                     bom_ref=f"image:{i}:{img.role}", purl=purl, hashes=_sha256(pinned),
                     description=f"{img.role} image {img.ref}, config {img.config_digest}")


def _tool(tool: LockedTool) -> Component:
    """``tool/``: the wheels install.sh installs on the far side, each a ``pkg:pypi`` library."""
    wheels = []
    for w in tool.wheels:
        name, version, _, _ = parse_wheel_filename(w.filename)
        purl = PackageURL("pypi", None, str(name), str(version), {"file_name": w.filename})
        wheels.append(Component(name=str(name), version=str(version), type=ComponentType.LIBRARY,
                                bom_ref=f"wheel:{w.filename}", purl=purl, hashes=_sha256(w.sha256),
                                description=f"{WHEELS_DIR}/{w.filename}"))
    return Component(name="airpack", version=tool.airpack, type=ComponentType.APPLICATION, bom_ref="tool",
                     description=f"airpack for the far side ({tool.platform}, CPython {', '.join(tool.pythons)})",
                     components=wheels)


def render_sbom(name: str, version: str, lock: Lock, lock_digest: str, created: str) -> bytes:
    """The CycloneDX 1.6 document for a bundle built from ``lock`` at ``created`` (ISO 8601, UTC)."""
    bundle = Component(name=name, version=version, type=ComponentType.APPLICATION, bom_ref="bundle")
    tool = Component(name="airpack", version=__version__, type=ComponentType.APPLICATION)
    components = [_model(lock), *(_image(i, img) for i, img in enumerate(lock.images))]
    if lock.tool is not None:
        components.append(_tool(lock.tool))
    bom = Bom(serial_number=uuid5(NAMESPACE_URL, f"airpack-bundle:{name}:{version}:{lock_digest}"),
              metadata=BomMetaData(timestamp=datetime.fromisoformat(created),
                                   component=bundle, tools=ToolRepository(components=[tool])),
              components=components)
    bom.register_dependency(bundle, components)
    return (JsonV1Dot6(bom).output_as_string(indent=1) + "\n").encode()
