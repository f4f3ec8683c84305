"""The model as a ModelPack artifact (airpack.oci.modelpack): media types, annotations, diffIds, stable bytes,
and the config validated against the ModelPack JSON schema kept in tests/data/modelpack/."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from airpack.oci import modelpack as mp
from airpack.oci.reference import model_repository, site_tag

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "modelpack" / "config-schema.json"


def _file(path: str, data: bytes) -> mp.ModelFile:
    return mp.ModelFile(path, len(data), hashlib.sha256(data).hexdigest())


FILES = [_file("tokenizer.json", b"{}"), _file("model-00002-of-00002.safetensors", b"w2"),
         _file("model-00001-of-00002.safetensors", b"w1"), _file("config.json", b'{"a":1}'),
         _file("README.md", b"# m"), _file("LICENSE", b"apache"), _file("sub/merges.txt", b"a b"),
         _file("modeling_x.py", b"pass")]
INFO = mp.ModelInfo(name="demo", version="1.0.0", created="2026-01-02T03:04:05Z", revision="abc123",
                    source_url="org/demo", format="safetensors", precision="bf16")


def validate(config: bytes) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
                                    ).validate(json.loads(config))


@pytest.mark.parametrize(("path", "want"), [
    ("model.safetensors", mp.WEIGHT), ("x/m-Q4_K_M.gguf", mp.WEIGHT), ("pytorch_model.bin", mp.WEIGHT),
    ("consolidated.pt", mp.WEIGHT), ("config.json", mp.WEIGHT_CONFIG), ("tokenizer.model", mp.WEIGHT_CONFIG),
    ("model.safetensors.index.json", mp.WEIGHT_CONFIG), ("vocab.txt", mp.WEIGHT_CONFIG),
    ("README.md", mp.DOC), ("LICENSE", mp.DOC), ("LICENSE.txt", mp.DOC), ("USE_POLICY.md", mp.DOC),
    ("modeling_x.py", mp.CODE),
])
def test_each_file_gets_the_media_type_for_its_kind(path: str, want: str) -> None:
    assert mp.layer_type(path) == want


def test_the_manifest_is_a_modelpack_artifact_of_raw_layers() -> None:
    art = mp.build_artifact(FILES, INFO)
    doc = json.loads(art.manifest)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert doc["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    assert doc["config"]["digest"] == "sha256:" + hashlib.sha256(art.config).hexdigest()
    assert doc["config"]["size"] == len(art.config)
    by_path = {ly["annotations"]["org.cncf.model.filepath"]: ly for ly in doc["layers"]}
    assert set(by_path) == {f.path for f in FILES}
    for f in FILES:  # a raw layer is the file: its digest is the file's sha256
        assert by_path[f.path]["digest"] == f"sha256:{f.sha256}" and by_path[f.path]["size"] == f.size
    assert by_path["model-00001-of-00002.safetensors"]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert by_path["config.json"]["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert by_path["LICENSE"]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    assert [ly["annotations"]["org.cncf.model.filepath"] for ly in doc["layers"]] == sorted(f.path for f in FILES)
    # CRI-O and Podman name a mounted artifact's files by their title (Kubernetes image volumes)
    assert all(ly["annotations"]["org.opencontainers.image.title"] == ly["annotations"]["org.cncf.model.filepath"]
               for ly in doc["layers"])
    assert art.manifest_descriptor.digest == "sha256:" + hashlib.sha256(art.manifest).hexdigest()


def test_the_config_has_diff_ids_equal_to_the_layer_digests_and_validates() -> None:
    art = mp.build_artifact(FILES, INFO)
    config = json.loads(art.config)
    assert config["modelfs"] == {"type": "layers", "diffIds": [ly.descriptor.digest for ly in art.layers]}
    assert config["descriptor"] == {"name": "demo", "version": "1.0.0", "createdAt": "2026-01-02T03:04:05Z",
                                    "revision": "abc123", "sourceURL": "org/demo"}
    assert config["config"] == {"format": "safetensors", "precision": "bf16"}
    validate(art.config)


def test_the_same_bundle_gives_the_same_bytes_whatever_the_order() -> None:
    a, b = mp.build_artifact(FILES, INFO), mp.build_artifact(list(reversed(FILES)), INFO)
    assert (a.config, a.manifest) == (b.config, b.manifest)
    assert b" " not in a.manifest.split(b'"annotations"')[0]  # canonical: no whitespace between tokens


def test_a_bad_config_fails_the_schema() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(json.dumps({"descriptor": {"name": ""}, "config": {}, "modelfs": {"type": "layers",
                                                                                    "diffIds": []}}).encode())


def test_info_from_the_bundle_uses_the_lock_and_the_planner() -> None:
    lock = {"model": {"source": "hub", "repo": "org/m-GGUF", "revision": "main", "commit": "c0ffee",
                      "quant": {"method": "Q4_K_M"}}}
    info = mp.info_from_bundle("m", "2", "2026-01-01T00:00:00Z", lock,
                               {"weight_format": "gguf", "quantization": "Q4_K_M"})
    assert (info.revision, info.source_url, info.format, info.quantization, info.precision) == (
        "c0ffee", "org/m-GGUF", "gguf", "Q4_K_M", None)
    plain = mp.info_from_bundle("m", "2", None, {"model": {"source": "local"}},
                                {"weight_format": "safetensors", "quantization": "bf16"})
    assert (plain.precision, plain.quantization, plain.revision) == ("bf16", None, None)
    art = mp.build_artifact([_file("m.gguf", b"g")], mp.info_from_bundle("m", "2", None, {}, None))
    assert json.loads(art.config)["config"] == {"format": "gguf"}  # from the files when no plan was recorded
    validate(art.config)


def test_architecture_and_param_size_come_from_the_planner() -> None:
    info = mp.info_from_bundle("m", "2", None, {}, {"weight_format": "gguf", "quantization": "Q4_1",
                                                    "architecture": "llama", "param_count": 134_515_008})
    art = mp.build_artifact([_file("m.gguf", b"g")], info)
    assert json.loads(art.config)["config"] == {"architecture": "llama", "format": "gguf", "paramSize": "135M",
                                                "quantization": "Q4_1"}
    validate(art.config)
    assert mp.info_from_bundle("m", "2", None, {}, {"param_count": None}).param_size is None


@pytest.mark.parametrize(("count", "size"), [(7, "7"), (1_000, "1K"), (134_515_008, "135M"),
                                             (999_999_999, "1B"), (1_711_376_384, "1.71B"),
                                             (8_030_261_248, "8.03B"), (70_553_706_496, "70.6B"),
                                             (1_234_567_890_123, "1.23T"), (0, None)])
def test_param_size_is_written_as_the_model_world_writes_it(count: int, size: str | None) -> None:
    assert mp.param_size(count) == size


def test_the_model_goes_to_the_bundle_name_tagged_with_its_version() -> None:
    assert model_repository("ai", "Demo_Model") == "ai/demo_model"
    assert model_repository("", "demo") == "demo"
    assert site_tag("1.0.0+build.5") == "1.0.0-build.5"


def test_no_files_no_artifact() -> None:
    with pytest.raises(ValueError, match="at least one"):
        mp.build_artifact([], INFO)
