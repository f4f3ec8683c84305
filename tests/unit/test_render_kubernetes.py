"""The Kubernetes manifests' weights modes and placement (``deploy.kubernetes``, ``target.replicas``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from render_helpers import DIGEST, check_kubernetes, context, placed

from airpack.errors import SpecError
from airpack.render import default_host_params, render_bundle_deploy, render_host
from airpack.spec import parse_spec

MODEL = "sha256:" + "12" * 32
WEIGHTS = "sha256:" + "34" * 32


def _render(ctx: Any, **host: Any) -> dict[str, bytes]:
    params = default_host_params("demo", **{"gpus": 1, "registry": "reg.local:5000/ai", "model_digest": MODEL,
                                            "weights_digest": WEIGHTS, "api_key_file": "/k", **host})
    return render_host(render_bundle_deploy(ctx, ("kubernetes",)), params)


def _pod(files: dict[str, bytes]) -> dict[str, Any]:
    return yaml.safe_load(files["kubernetes/deployment.yaml"])["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _weights_volume(files: dict[str, bytes]) -> dict[str, Any]:
    return next(v for v in _pod(files)["volumes"] if v["name"] == "weights")


def test_image_volume_is_the_default_and_names_the_model_artifact_by_digest() -> None:
    files = _render(context("vllm"))
    assert _weights_volume(files) == {"name": "weights", "image": {
        "reference": f"reg.local:5000/ai/demo-model@{MODEL}", "pullPolicy": "IfNotPresent"}}
    mount = next(m for m in _pod(files)["containers"][0]["volumeMounts"] if m["name"] == "weights")
    assert mount == {"name": "weights", "mountPath": "/models", "readOnly": True}
    assert "initContainers" not in _pod(files)
    assert sorted(files) == ["kubernetes/deployment.yaml", "kubernetes/networkpolicy.yaml",
                             "kubernetes/service.yaml"]


def test_init_copy_copies_from_the_weights_image_into_an_empty_dir() -> None:
    ctx = context("vllm")
    files = _render(ctx, weights="init-copy")
    pod = _pod(files)
    (init,) = pod["initContainers"]
    assert init["image"] == f"reg.local:5000/ai/demo-model@{WEIGHTS}"
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert init["volumeMounts"] == [{"name": "weights", "mountPath": "/weights"}]
    pairs = init["command"][-2 * len(ctx.model_files):]
    assert pairs == [x for pair in zip(ctx.model_files, ctx.model_sha256, strict=True) for x in pair]
    assert _weights_volume(files) == {"name": "weights", "emptyDir": {"sizeLimit": "2Gi"}}
    assert "kubernetes/pvc.yaml" not in files


def test_init_copy_into_a_claim_of_the_storage_class() -> None:
    ctx = dataclasses.replace(placed(context("tgi"), storage_class="fast-ssd"), replicas=1)
    files = _render(ctx, weights="init-copy")
    assert _weights_volume(files) == {"name": "weights", "persistentVolumeClaim": {"claimName": "demo-model-weights"}}
    claim = yaml.safe_load(files["kubernetes/pvc.yaml"])
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["metadata"]["namespace"] == "ai"
    # the same bundle with image volumes writes no claim at all
    assert "kubernetes/pvc.yaml" not in _render(ctx)


def test_host_path_reads_the_node_copy_under_the_prefix() -> None:
    files = _render(context("llamacpp"), weights="host-path")
    assert _weights_volume(files) == {"name": "weights", "hostPath": {"path": "/opt/airpack/demo/model",
                                                                      "type": "Directory"}}


def test_replicas_placement_and_a_disruption_budget() -> None:
    files = _render(placed(context("sglang")), gpus=2)
    deployment = yaml.safe_load(files["kubernetes/deployment.yaml"])
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 2}  # per replica
    pdb = yaml.safe_load(files["kubernetes/pdb.yaml"])
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/name": "demo-model", "app.kubernetes.io/component": "server"}}}
    for data in files.values():
        for doc in check_kubernetes(data):  # strict, Kubernetes 1.33, 1.35 and 1.37
            assert doc["metadata"]["namespace"] == "ai"
    single = _render(context("sglang"))
    assert "kubernetes/pdb.yaml" not in single
    assert yaml.safe_load(single["kubernetes/deployment.yaml"])["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(("ctx", "weights", "match"), [
    (placed(context("vllm")), "host-path", "host-path' serve one node; target.replicas is 3"),
    (placed(context("vllm"), storage_class="fast"), "init-copy", "ReadWriteOnce claim serves one node"),
    (context("custom", image_has_shell=False), "init-copy", "has no shell"),
])
def test_a_mode_the_bundle_cannot_serve_is_refused_by_name(ctx: Any, weights: str, match: str) -> None:
    files = render_bundle_deploy(ctx, ("kubernetes",))  # the build accepts it: the other modes work
    with pytest.raises(SpecError, match=match):
        render_host(files, default_host_params("demo", registry="r.local", model_digest=MODEL,
                                               weights_digest=WEIGHTS, weights=weights))


def test_host_params_check_the_weights_fields() -> None:
    with pytest.raises(SpecError, match=r"host\.weights"):
        default_host_params("demo", weights="nfs")
    with pytest.raises(SpecError, match=r"host\.model_digest"):
        default_host_params("demo", model_digest=DIGEST[:-1])


_SPEC = {"apiVersion": "airpack/v1", "name": "m", "version": "1.0.0", "model": {"repo": "org/m"},
         "runtime": {"engine": "vllm"}}


def test_the_spec_takes_the_old_list_and_the_new_mapping() -> None:
    old = parse_spec({**_SPEC, "deploy": ["compose", "kubernetes"]}, Path(), check_paths=False)
    assert old.deploy == ("compose", "kubernetes") and old.kubernetes.weights == "image-volume"
    assert old.target.replicas == 1
    new = parse_spec({**_SPEC, "target": {"replicas": 4}, "deploy": {"systemd": None, "kubernetes": {
        "weights": "init-copy", "namespace": "llm", "storageClass": "local-path",
        "nodeSelector": {"gpu": "a100", "zone": 3},
        "tolerations": [{"key": "dedicated", "value": "llm", "effect": "NoSchedule"}]}}},
        Path(), check_paths=False)
    assert new.deploy == ("kubernetes", "systemd") and new.target.replicas == 4
    k = new.kubernetes
    assert (k.weights, k.namespace, k.storage_class) == ("init-copy", "llm", "local-path")
    assert k.node_selector == (("gpu", "a100"), ("zone", "3"))
    assert [t.to_dict() for t in k.tolerations] == [
        {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}]


@pytest.mark.parametrize(("deploy", "target", "match"), [
    ({"kubernetes": {"weights": "hostpath"}}, {}, "did you mean 'host-path'"),
    ({"kubernetes": {"namespace": "Prod_1"}}, {}, "namespace: 'Prod_1' is not a namespace name"),
    ({"kubernetes": {"nodeSelector": {"bad key!": "x"}}}, {}, "not a Kubernetes label key"),
    ({"kubernetes": {"nodeSelector": {"gpu": "a b"}}}, {}, "not a Kubernetes label value"),
    ({"kubernetes": {"tolerations": [{"operator": "Exists", "value": "x"}]}}, {}, "left out when operator"),
    ({"kubernetes": {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}}, {}, "only applies to effect"),
    ({"kubernetes": {"tolerations": {"key": "k"}}}, {}, "tolerations: must be a list"),
    ({"kubernetes": {"storageClass": "Fast"}}, {}, "not a storage class name"),
    ({"kubernetes": {"replicas": 2}}, {}, "deploy.kubernetes.replicas: unknown key"),
    ({"compose": {"x": 1}}, {}, "deploy.compose: takes no options yet"),
    ({"helm": {}}, {}, "deploy.helm: unknown key"),
    (["kubernetes"], {"replicas": 0}, "target.replicas: must be >= 1"),
    (["kubernetes"], {"replicas": 1001}, "target.replicas: must be <= 1000"),
])
def test_bad_kubernetes_settings_are_named(deploy: Any, target: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_spec({**_SPEC, "deploy": deploy, "target": target}, Path(), check_paths=False)
