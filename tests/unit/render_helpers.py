"""Deploy contexts for every engine, shared by the profile and render tests."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from airpack.profiles import ENGINES, get_profile
from airpack.profiles.context import DeployContext
from airpack.profiles.launch import CustomEngine
from airpack.spec_kubernetes import KubernetesSpec, Toleration

IMAGE_ID = "sha256:" + "ab" * 32
DIGEST = "sha256:" + "cd" * 32

_GGUF_FILES = ("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf",)
_HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def context(engine: str, **overrides: Any) -> DeployContext:
    """A valid DeployContext for ``engine``; keyword arguments replace fields."""
    gguf = get_profile(engine).needs_gguf
    fields: dict[str, Any] = {
        "name": "demo-model",
        "version": "1.0.0",
        "profile": get_profile(engine),
        "image_local": IMAGE_ID,
        "image_registry": f"ghcr.io/example/{engine}@{DIGEST}",
        "model_files": _GGUF_FILES if gguf else _HF_FILES,
        "main_gguf": _GGUF_FILES[0] if gguf else None,
        "served_name": "qwen2.5:0.5b",
        "gpus": 1,
        "context_length": 4096,
        "memory_fraction": 0.9 if engine in ("vllm", "sglang", "tgi") else None,
        "model_bytes": 400_000_000,
    }
    if engine == "custom":
        fields["custom"] = CustomEngine(
            command=(
                "-m",
                "{model_dir}/m.gguf",
                "--host",
                "{host}",
                "--port",
                "{port}",
                "--alias",
                "{served_name}",
            ),
            port=8080,
            health_cmd=("/bin/busybox", "wget", "-q", "-O", "/dev/null", "{url}"),
            api_key_file_flag="--api-key-file",
        )
        fields["model_files"] = ("m.gguf",)
    fields.update(overrides)
    fields.setdefault("model_sha256", tuple(f"{i:064x}" for i, _ in enumerate(fields["model_files"])))
    return DeployContext(**fields)


def all_contexts() -> list[tuple[str, DeployContext]]:
    return [(engine, context(engine)) for engine in ENGINES]


def placed(ctx: DeployContext, **kubernetes: Any) -> DeployContext:
    """``ctx`` with three replicas and every ``deploy.kubernetes`` placement field set."""
    spec = KubernetesSpec(namespace="ai", node_selector=(("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),),
                          tolerations=(Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
                                       Toleration(key="node.kubernetes.io/unreachable", operator="Exists",
                                                  effect="NoExecute", seconds=300)))
    return dataclasses.replace(ctx, replicas=3, kubernetes=dataclasses.replace(spec, **kubernetes))


# ---- validators: a missing one is a skip locally and a failure with CI=true -----------------------------

COMPOSE_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "compose-spec.json"  # in the repo: tests/data/README.md
# Image volumes (the default weights mode) are beta from 1.33; 1.35 is the current release; 1.37 the newest
# schema kubernetes-validate ships.
K8S_VERSIONS = ("1.33.0", "1.35.0", "1.37.0")


def missing(what: str) -> None:
    """Skip, or fail under CI, when a validator is not available."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required when CI=true")
    pytest.skip(f"{what} not available")


def check_compose_schema(data: bytes) -> dict[str, Any]:
    try:
        import jsonschema
    except ImportError:
        missing("jsonschema")
    doc = yaml.safe_load(data)
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(doc)
    return doc  # type: ignore[no-any-return]


def check_kubernetes(data: bytes) -> list[dict[str, Any]]:
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate")
    docs = [d for d in yaml.safe_load_all(data) if d is not None]
    for doc in docs:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    return docs


def check_docker_compose(data: bytes, tmp: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        missing("docker-compose (Compose v1)")
    path = tmp / "compose.yaml"
    path.write_bytes(data)
    proc = subprocess.run(
        [exe, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
