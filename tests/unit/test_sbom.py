"""The bundle's CycloneDX SBOM: valid against the CycloneDX 1.6 JSON schema (the library's strict validator),
listing exactly the locked model files and images with their digests, signed like every other file, and
byte-identical across rebuilds of the same lock."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from airpack.bundle_layout import Manifest
from airpack.lock import Lock, LockedFile, LockedImage, LockedModel
from airpack.sbom import SBOM_PATH, render_sbom

SHA = "ab" * 32


def _valid(data: bytes) -> dict:
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())
    assert errors is None, errors
    return json.loads(data)


def test_a_built_bundle_carries_a_signed_valid_sbom_of_its_files(small_model: Path, built_bundle, keys) -> None:
    bundle = built_bundle(small_model, key=keys.ecdsa)
    doc = _valid((bundle / SBOM_PATH).read_bytes())
    sums = dict(reversed(line.split("  ", 1)) for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert sums[SBOM_PATH] == hashlib.sha256((bundle / SBOM_PATH).read_bytes()).hexdigest()  # signed like the rest
    manifest = Manifest.from_json((bundle / "airpack.json").read_bytes())
    (model,) = doc["components"]
    assert model["type"] == "machine-learning-model" and model["version"] == "local"
    files = {c["name"]: c["hashes"][0]["content"] for c in model["components"]}
    assert files == {e.path: e.sha256 for e in manifest.files if e.kind == "model"}
    assert doc["metadata"]["component"]["name"] == "test-model" and doc["metadata"]["timestamp"].startswith(
        "2023-11-14T22:13:20")  # the build time (SOURCE_DATE_EPOCH)
    again = built_bundle(small_model, key=keys.ecdsa)
    assert (again / SBOM_PATH).read_bytes() == (bundle / SBOM_PATH).read_bytes()  # reproducible


def test_a_hub_model_and_images_get_purls_at_their_digests() -> None:
    lock = Lock(spec_digest=SHA, model=LockedModel(
        source="hf", files=(LockedFile("model.gguf", 10, SHA),), repo="HuggingFaceTB/SmolLM2-135M-Instruct",
        revision="main", commit="c" * 40), images=(
        LockedImage(ref="registry.example:5000/ggml-org/llama.cpp:server", repository="ggml-org/llama.cpp",
                    digest="sha256:" + "d" * 64, config_digest="sha256:" + "e" * 64, platform="linux/amd64",
                    tag="server"),))
    doc = _valid(render_sbom("demo", "1.2.3", lock, SHA, "2026-01-02T03:04:05Z"))
    by_type = {c["type"]: c for c in doc["components"]}
    model, image = by_type["machine-learning-model"], by_type["container"]
    assert model["purl"] == f"pkg:huggingface/HuggingFaceTB/SmolLM2-135M-Instruct@{'c' * 40}"
    assert image["type"] == "container" and image["version"] == "sha256:" + "d" * 64
    purl = PackageURL.from_string(image["purl"])
    assert (purl.type, purl.name, purl.version) == ("oci", "llama.cpp", "sha256:" + "d" * 64)
    assert purl.qualifiers == {"repository_url": "registry.example:5000/ggml-org/llama.cpp", "tag": "server",
                               "platform": "linux/amd64"}
    assert image["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert sorted(deps["bundle"]) == sorted([model["bom-ref"], image["bom-ref"]])
    assert doc["serialNumber"] == json.loads(render_sbom("demo", "1.2.3", lock, SHA, "2026-01-02T03:04:05Z"))[
        "serialNumber"]


def test_an_image_from_the_local_engine_is_pinned_by_its_config_digest() -> None:
    lock = Lock(spec_digest=SHA, model=LockedModel(source="local", files=(LockedFile("w", 1, SHA),), path="/m"),
                images=(LockedImage(ref="airpack-test/llama-server:1", repository="airpack-test/llama-server",
                                    digest="", config_digest="sha256:" + "e" * 64, platform="linux/amd64",
                                    source="engine", tag="1"),))
    doc = _valid(render_sbom("x", "1.0.0", lock, SHA, "2026-01-02T03:04:05Z"))
    (image,) = [c for c in doc["components"] if c["type"] == "container"]
    assert image["version"] == "sha256:" + "e" * 64 and PackageURL.from_string(image["purl"]).version == image[
        "version"]


def test_the_validator_would_catch_a_broken_document() -> None:
    """The check above is not vacuous: the same validator refuses a component without a type."""
    lock = Lock(spec_digest=SHA, model=LockedModel(source="local", files=(LockedFile("w", 1, SHA),), path="/m"))
    doc = json.loads(render_sbom("x", "1.0.0", lock, SHA, "2026-01-02T03:04:05Z"))
    del doc["components"][0]["type"]
    with pytest.raises(AssertionError):
        _valid(json.dumps(doc).encode())


def test_the_tool_and_each_of_its_wheels_are_listed_with_their_sha256() -> None:
    """tool/ in a bundle: airpack and every wheel install.sh installs, as pkg:pypi libraries at their file's digest."""
    from airpack.tool import LockedTool, LockedWheel

    wheels = (LockedWheel("airpack-0.1.0-py3-none-any.whl", 10, "1" * 64),
              LockedWheel("cffi-1.17.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", 20, "2" * 64))
    lock = Lock(spec_digest=SHA, model=LockedModel(source="local", files=(LockedFile("w", 1, SHA),), path="/m"),
                tool=LockedTool("0.1.0", "linux/amd64", ("3.12",), wheels))
    doc = _valid(render_sbom("x", "1.0.0", lock, SHA, "2026-01-02T03:04:05Z"))
    (tool,) = [c for c in doc["components"] if c.get("bom-ref") == "tool"]
    assert (tool["name"], tool["version"], tool["type"]) == ("airpack", "0.1.0", "application")
    libs = {c["name"]: c for c in tool["components"]}
    assert set(libs) == {"airpack", "cffi"}
    cffi = PackageURL.from_string(libs["cffi"]["purl"])
    assert (cffi.type, cffi.name, cffi.version) == ("pypi", "cffi", "1.17.1")
    assert cffi.qualifiers == {"file_name": wheels[1].filename}
    assert libs["cffi"]["hashes"] == [{"alg": "SHA-256", "content": "2" * 64}]
    assert "tool" in {d["ref"]: d for d in doc["dependencies"]}["bundle"]["dependsOn"]
