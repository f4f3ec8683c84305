"""The model as a CNCF ModelPack artifact: an OCI image manifest whose layers are the model's files, raw.

Pure: from the verified bundle's signed inventory (path, size, sha256 of each model file) and what the spec, the
lock and the planner recorded, it builds the config blob and the manifest, byte for byte the same for the same
bundle. A raw layer is the file itself, so its digest is the file's signed sha256 and ``modelfs.diffIds`` are the
layer digests. Media types and the config schema: modelpack/model-spec (``docs/spec.md``,
``specs-go/v1/mediatype.go``, ``schema/config-schema.json``).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airpack.hashing import sha256_bytes
from airpack.oci.manifest import Descriptor

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
FILEPATH = "org.cncf.model.filepath"
# The name CRI-O and Podman give a raw layer when they mount an artifact as a volume (Kubernetes image volumes):
# with it, the engine finds each file at its path in the model folder (modelpack/model-spec#58).
TITLE = "org.opencontainers.image.title"

_WEIGHT_EXT = {".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".npz",
               ".pdparams", ".ggml", ".llamafile"}
_DOC_NAMES = re.compile(r"^(readme|license|licence|notice|copying|use_policy|model_card|authors)([._-].*)?$",
                        re.IGNORECASE)
_DOC_EXT = {".md", ".pdf", ".html", ".rst"}
_CODE_EXT = {".py"}
_PLAIN_FLOATS = {"bf16", "bfloat16", "fp16", "f16", "float16", "fp32", "f32", "float32"}


@dataclass(frozen=True)
class ModelFile:
    """One model file as the bundle signed it: ``path`` relative to the model folder."""

    path: str
    size: int
    sha256: str  # hex


@dataclass(frozen=True)
class ModelInfo:
    """What the descriptor and the config say about the model (``None``: not known, left out)."""

    name: str
    version: str
    created: str | None = None
    revision: str | None = None
    source_url: str | None = None
    architecture: str | None = None
    format: str | None = None
    param_size: str | None = None
    precision: str | None = None
    quantization: str | None = None


@dataclass(frozen=True)
class Layer:
    """A raw layer and the model file whose bytes it is."""

    descriptor: Descriptor
    file: ModelFile


@dataclass(frozen=True)
class Artifact:
    """The config blob and the manifest, as bytes, with their descriptors."""

    config: bytes
    config_descriptor: Descriptor
    manifest: bytes
    manifest_descriptor: Descriptor
    layers: tuple[Layer, ...]


def layer_type(path: str) -> str:
    """The media type for a model file: weights, weight config (config, tokenizer), docs or code."""
    name = posixpath.basename(path)
    ext = posixpath.splitext(name)[1].lower()
    if ext in _WEIGHT_EXT:
        return WEIGHT
    if _DOC_NAMES.match(name) or ext in _DOC_EXT:
        return DOC
    if ext in _CODE_EXT:
        return CODE
    return WEIGHT_CONFIG


def info_from_bundle(name: str, version: str, created: str | None, lock: Mapping[str, Any],
                     plan: Mapping[str, Any] | None) -> ModelInfo:
    """Descriptor fields from the spec and lock, config fields from the planner's facts where it recorded
    them (the lock's ``facts``, the bundle manifest's ``plan``) and the lock's chosen quantization."""
    model = dict(lock.get("model") or {})
    plan = {**(lock.get("facts") or {}), **{k: v for k, v in dict(plan or {}).items() if v is not None}}
    params = plan.get("param_count")
    repo, revision = model.get("repo"), model.get("commit") or model.get("revision")
    label = str(plan.get("quantization") or "") or None
    quant = (model.get("quant") or {}).get("method") if isinstance(model.get("quant"), dict) else None
    precision = label if label and label.lower() in _PLAIN_FLOATS else None
    quantization = quant or (label if label and precision is None else None)
    return ModelInfo(
        name=name, version=version, created=created, revision=str(revision) if revision else None,
        source_url=str(repo) if repo else None, format=str(plan.get("weight_format") or "") or None,
        precision=precision, quantization=str(quantization) if quantization else None,
        architecture=str(plan.get("architecture") or "") or None,
        param_size=param_size(params) if isinstance(params, int) and not isinstance(params, bool) else None,
    )


def param_size(count: int) -> str | None:
    """A parameter count as the model world writes it: ``135M``, ``1.71B``, ``8.03B``, ``70.6B``."""
    if count <= 0:
        return None
    units = (("", 1), ("K", 10**3), ("M", 10**6), ("B", 10**9), ("T", 10**12))
    for unit, scale in reversed(units):
        if count >= scale or scale == 1:
            value = float(f"{count / scale:.3g}")
            if value >= 1000 and unit != "T":  # 999,999,999 rounds to 1000M: say 1B
                unit, value = next((u, float(f"{count / s:.3g}")) for u, s in units if s == scale * 1000)
            return f"{value:g}{unit}"
    return None


def _format(files: Iterable[ModelFile]) -> str | None:
    exts = {posixpath.splitext(f.path)[1].lower() for f in files if layer_type(f.path) == WEIGHT}
    for ext, name in ((".gguf", "gguf"), (".safetensors", "safetensors"), (".onnx", "onnx")):
        if ext in exts:
            return name
    return None


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def config_document(info: ModelInfo, layers: Iterable[Layer]) -> dict[str, Any]:
    """The ``application/vnd.cncf.model.config.v1+json`` document: descriptor, config, modelfs."""
    layers = list(layers)
    descriptor = {"name": info.name, "version": info.version, "createdAt": info.created,
                  "revision": info.revision, "sourceURL": info.source_url}
    config = {"architecture": info.architecture, "format": info.format or _format(ly.file for ly in layers),
              "paramSize": info.param_size, "precision": info.precision, "quantization": info.quantization}
    return {
        "descriptor": {k: v for k, v in descriptor.items() if v},
        "config": {k: v for k, v in config.items() if v},
        "modelfs": {"type": "layers", "diffIds": [ly.descriptor.digest for ly in layers]},
    }


def build_artifact(files: Iterable[ModelFile], info: ModelInfo) -> Artifact:
    """The artifact for ``files`` (in path order: the same bundle gives the same bytes)."""
    layers = tuple(
        Layer(Descriptor(layer_type(f.path), f"sha256:{f.sha256}", f.size,
                         annotations={FILEPATH: f.path, TITLE: f.path}), f)
        for f in sorted(files, key=lambda f: f.path.encode())
    )
    if not layers:
        raise ValueError("a model artifact needs at least one file")
    config = _canonical(config_document(info, layers))
    config_desc = Descriptor(CONFIG, f"sha256:{sha256_bytes(config)}", len(config))
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
        "config": config_desc.to_dict(), "layers": [ly.descriptor.to_dict() for ly in layers],
        "annotations": {"org.opencontainers.image.title": info.name, "org.opencontainers.image.version": info.version},
    })
    return Artifact(config, config_desc, manifest, Descriptor(OCI_MANIFEST, f"sha256:{sha256_bytes(manifest)}",
                                                             len(manifest)), layers)
