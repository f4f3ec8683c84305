"""Two-stage rendering of the deploy files, validated for every engine and target."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from render_helpers import (
    DIGEST,
    IMAGE_ID,
    check_compose_schema,
    check_docker_compose,
    check_kubernetes,
    context,
    placed,
)

from airpack.errors import BuildError, SpecError
from airpack.profiles import ENGINES
from airpack.profiles.context import DeployContext
from airpack.render import (
    HOST_PARAMS,
    HostParams,
    default_host_params,
    host_diff,
    render_bundle_deploy,
    render_host,
    templates_dir,
)
from airpack.spec import DEPLOY_FORMATS
from airpack.spec_kubernetes import WEIGHTS_MODES

MODEL_DIGEST = "sha256:" + "ab" * 32
HOST_REF = re.compile(r"host\.([a-z_]+)")
WEIRD_NAME = 'we"ird: name #x {{ host.port }} $HOME %n \\ [a]'


def _host(**kw: Any) -> HostParams:
    return default_host_params("demo", **{"gpus": 1, "registry": "reg.local:5000/ai", "model_digest": MODEL_DIGEST, **kw})


def _render(ctx: DeployContext, targets: tuple[str, ...] = DEPLOY_FORMATS, **host: Any) -> dict[str, bytes]:
    return render_host(render_bundle_deploy(ctx, targets), _host(**host))


def _service(files: dict[str, bytes]) -> dict[str, Any]:
    doc = yaml.safe_load(files["compose.yaml"])
    return doc["services"]["demo-model"]  # type: ignore[no-any-return]


def _k8s(files: dict[str, bytes], kind: str) -> dict[str, Any]:
    return yaml.safe_load(files[f"kubernetes/{kind}.yaml"])  # type: ignore[no-any-return]


def _container(files: dict[str, bytes]) -> dict[str, Any]:
    return _k8s(files, "deployment")["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


# ---- every engine x every target passes the validators --------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("gpus", [0, 2])
def test_compose_matches_schema(engine: str, gpus: int) -> None:
    key = None if engine == "ollama" else "/etc/airpack/key"
    check_compose_schema(_render(context(engine), ("compose",), gpus=gpus, api_key_file=key)["compose.yaml"])
    hostnet = _render(context(engine), ("compose",), gpus=gpus, network="host")
    check_compose_schema(hostnet["compose.yaml"])


@pytest.mark.parametrize("engine", ENGINES)
def test_docker_compose_config_accepts(engine: str, tmp_path: Path) -> None:
    check_docker_compose(_render(context(engine), ("compose",), gpus=2)["compose.yaml"], tmp_path)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("weights", WEIGHTS_MODES)
@pytest.mark.parametrize("gpus", [0, 2])
def test_kubernetes_manifests_validate(engine: str, weights: str, gpus: int) -> None:
    """Strictly valid for Kubernetes 1.33, 1.35 and 1.37, in every weights mode; one replica, and three placed
    replicas (with a claim for init-copy)."""
    key = None if engine == "ollama" else "/etc/airpack/key"
    for ctx in (context(engine), placed(context(engine), storage_class="fast-ssd")):
        if weights in ("host-path", "init-copy") and ctx.replicas > 1:
            ctx = dataclasses.replace(ctx, replicas=1)  # refused with replicas (test_render_kubernetes)
        files = _render(ctx, ("kubernetes",), gpus=gpus, api_key_file=key, weights=weights, weights_digest=DIGEST)
        kinds = []
        for rel, data in files.items():
            if rel.startswith("kubernetes/"):
                kinds += [d["kind"] for d in check_kubernetes(data)]
        expected = {"Deployment", "Service", "NetworkPolicy"}
        expected |= {"PersistentVolumeClaim"} if weights == "init-copy" and ctx.kubernetes.storage_class else set()
        expected |= {"PodDisruptionBudget"} if ctx.replicas > 1 else set()
        assert expected == set(kinds) - {"ConfigMap"}


@pytest.mark.parametrize("engine", ENGINES)
def test_systemd_units_render(engine: str) -> None:
    files = _render(context(engine), ("systemd",), gpus=2)
    unit = files["systemd/airpack-demo-model.service"].decode()
    quadlet = files["systemd/airpack-demo-model.container"].decode()
    assert "ExecStart=/usr/bin/docker run --rm --name airpack-demo-model --pull=never" in unit
    assert "--gpus 2" in unit
    assert f"Image={IMAGE_ID}" in quadlet
    assert "AddDevice=nvidia.com/gpu=1" in quadlet
    assert "{{" not in unit + quadlet and "{%" not in unit + quadlet


# ---- stage 1 leaves only host parameters -----------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_stage1_leaves_only_declared_host_parameters(engine: str) -> None:
    files = render_bundle_deploy(placed(context(engine), storage_class="fast-ssd"), DEPLOY_FORMATS)
    used = {m for data in files.values() for m in HOST_REF.findall(data.decode())}
    assert used <= set(HOST_PARAMS)
    assert {"port", "prefix", "gpus", "registry"} <= used
    assert "[[" not in b"".join(files.values()).decode()


def test_stage1_is_deterministic_and_sorted() -> None:
    a = render_bundle_deploy(context("vllm"), DEPLOY_FORMATS)
    b = render_bundle_deploy(context("vllm"), reversed(DEPLOY_FORMATS))
    assert a == b and list(a) == sorted(a)
    assert set(a) == {
        "compose.yaml",
        "kubernetes/deployment.yaml",
        "kubernetes/networkpolicy.yaml",
        "kubernetes/service.yaml",
        "systemd/airpack-demo-model.container",
        "systemd/airpack-demo-model.service",
    }


def test_unknown_target() -> None:
    with pytest.raises(SpecError, match="unknown deploy target"):
        render_bundle_deploy(context("vllm"), ["helm"])


def _templates_copy(tmp_path: Path, extra: str) -> Path:
    dst = tmp_path / "templates"
    shutil.copytree(templates_dir(), dst)
    path = dst / "compose.yaml.j2"
    path.write_text(path.read_text() + extra)
    return dst


def test_strict_undefined_in_stage1(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no_such_variable"):
        render_bundle_deploy(
            context("vllm"), ["compose"], templates=_templates_copy(tmp_path, "[[ no_such_variable ]]\n")
        )


def test_stage1_output_may_not_reference_other_names(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="only host parameters"):
        render_bundle_deploy(
            context("vllm"), ["compose"], templates=_templates_copy(tmp_path, "# {{ ctx.name }}\n")
        )


# ---- stage 2 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("port: {{ host.nope }}\n", "unknown host parameter"),
        ("port: {{ secret }}\n", "only host parameters"),
        ("port: {{ host['port'] }}\n", "host.<parameter>"),
        ("port: {{ host.__class__ }}\n", "unknown host parameter"),
        ("port: {{ host.port \n", "line"),
    ],
)
def test_stage2_refuses_anything_but_declared_host_parameters(source: str, message: str) -> None:
    with pytest.raises(BuildError, match=re.escape(message)):
        render_host({"compose.yaml": source.encode()}, _host())


def test_stage2_substitutes_declared_parameters() -> None:
    out = render_host(
        {"a": b"{{ host.port }} {{ host.prefix }}{% if host.gpus > 0 %} gpu{% endif %}.\n"}, _host()
    )
    assert out == {"a": b"8000 /opt/airpack/demo gpu.\n"}


def test_stage2_missing_registry_is_reported() -> None:
    files = render_bundle_deploy(context("vllm"), ["kubernetes"])
    with pytest.raises(SpecError, match=r"needs host parameter\(s\) \['registry'\]"):
        render_host(files, default_host_params("demo"))


@pytest.mark.parametrize(
    "kw",
    [
        {"port": 0},
        {"port": True},
        {"bind": "localhost"},
        {"bind": "fe80::1%eth0"},
        {"prefix": "opt/x"},
        {"prefix": '/opt/"x'},
        {"prefix": "/opt/{{x}}"},
        {"prefix": "/opt/../etc"},
        {"gpus": -1},
        {"registry": "reg local"},
        {"network": "none"},
        {"api_key_file": "/k$ey"},
    ],
)
def test_host_params_are_validated(kw: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match=r"host\."):
        default_host_params("demo", **kw)


def test_host_diff_shows_the_changed_port() -> None:
    files = render_bundle_deploy(context("llamacpp"), ["compose"])
    diff = host_diff(files, _host(port=9000), _host())
    assert '-      - "127.0.0.1:8000:8080"' in diff
    assert '+      - "127.0.0.1:9000:8080"' in diff
    assert host_diff(files, _host(), _host()) == ""


# ---- safety of values from the spec ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["vllm", "llamacpp", "custom"])
def test_yaml_special_served_name_round_trips(engine: str) -> None:
    files = _render(context(engine, served_name=WEIRD_NAME), ("compose", "kubernetes"))
    compose_words = [str(a).replace("$$", "$") for a in _service(files).get("command", [])]
    assert WEIRD_NAME in compose_words  # Compose reads "$$" as "$"
    assert _k8s(files, "deployment")["metadata"]["annotations"]["airpack.io/served-model-name"] == WEIRD_NAME
    k8s_args = [a.replace("$$", "$") for a in _container(files).get("args", [])]
    assert WEIRD_NAME in k8s_args
    check_compose_schema(files["compose.yaml"])
    check_kubernetes(files["kubernetes/deployment.yaml"])


def test_served_name_cannot_inject_stage2_expressions() -> None:
    name = "{{ host.port }}{% if true %}x{% endif %}"
    files = _render(context("llamacpp", served_name=name), ("systemd", "compose"))
    assert b'"{{ host.port }}{%% if true %%}x{%% endif %%}"' in files["systemd/airpack-demo-model.service"]
    assert name in _service(files)["command"]


def test_systemd_escapes_specifiers_and_dollars() -> None:
    files = _render(context("llamacpp", served_name='a%b$c"d'), ("systemd",))
    assert b'"a%%b$$c\\"d"' in files["systemd/airpack-demo-model.service"]
    assert b'"a%%b$c\\"d"' in files["systemd/airpack-demo-model.container"]


def test_control_characters_in_served_name_are_refused() -> None:
    with pytest.raises(SpecError, match=r"runtime\.servedName"):
        context("vllm", served_name="a\nb: c")


# ---- GPUs, shared memory, network, API key ---------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_no_gpu_reservation_without_gpus(engine: str) -> None:
    files = _render(context(engine), DEPLOY_FORMATS, gpus=0)
    assert "deploy" not in _service(files)
    assert "resources" not in _container(files)
    assert b"--gpus" not in files["systemd/airpack-demo-model.service"]
    assert b"nvidia.com/gpu" not in b"".join(files.values())


@pytest.mark.parametrize("engine", ENGINES)
def test_gpu_reservation_with_gpus(engine: str) -> None:
    files = _render(context(engine), DEPLOY_FORMATS, gpus=3)
    (device,) = _service(files)["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 3, "capabilities": ["gpu"]}
    assert _container(files)["resources"] == {"limits": {"nvidia.com/gpu": 3}}


def test_tensor_parallel_follows_host_gpus_and_gets_shm() -> None:
    one, two = _render(context("vllm"), gpus=1), _render(context("vllm"), gpus=2)
    args = _service(two)["command"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert "shm_size" not in _service(one) and _service(two)["shm_size"] == "16gb"
    volumes = {v["name"]: v for v in _k8s(two, "deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert "dshm" not in str(_k8s(one, "deployment"))


def test_fixed_tensor_parallel_ignores_host_gpus() -> None:
    args = _service(_render(context("sglang", tensor_parallel=4), gpus=8))["command"]
    assert args[args.index("--tp-size") + 1] == "4"


def test_host_network_moves_bind_and_port_into_engine_flags() -> None:
    svc = _service(_render(context("llamacpp"), ("compose",), network="host", bind="10.1.2.3", port=9001))
    assert svc["network_mode"] == "host" and "ports" not in svc
    assert svc["command"][svc["command"].index("--host") + 1] == "10.1.2.3"
    assert svc["command"][svc["command"].index("--port") + 1] == "9001"
    assert svc["healthcheck"]["test"][-1] == "http://10.1.2.3:9001/health"


def test_bridge_network_publishes_on_bind_address() -> None:
    svc = _service(_render(context("llamacpp"), ("compose",), bind="::1", port=9001))
    assert svc["ports"] == ["[::1]:9001:8080"]
    assert svc["command"][svc["command"].index("--host") + 1] == "0.0.0.0"  # noqa: S104


def test_api_key_file_is_mounted_not_embedded() -> None:
    files = _render(context("vllm"), api_key_file="/etc/airpack/key")
    svc = _service(files)
    assert svc["entrypoint"][:2] == ["/bin/sh", "-c"] and "VLLM_API_KEY" in svc["entrypoint"][2]
    assert {
        "type": "bind",
        "source": "/etc/airpack/key",
        "target": "/run/airpack-secrets/api-key",
        "read_only": True,
    } in svc["volumes"]
    secret = [v for v in _k8s(files, "deployment")["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert secret[0]["secret"]["secretName"] == "demo-model-api-key"
    assert "entrypoint" not in _service(_render(context("vllm")))


def test_llamacpp_uses_api_key_file_flag() -> None:
    args = _service(_render(context("llamacpp"), api_key_file="/k"))["command"]
    assert args[-2:] == ["--api-key-file", "/run/airpack-secrets/api-key"]


def test_ollama_refuses_api_key_at_install() -> None:
    files = render_bundle_deploy(context("ollama"), DEPLOY_FORMATS)
    with pytest.raises(SpecError, match="cannot require an API key"):
        render_host(files, _host(api_key_file="/k"))


# ---- offline, pinning, read-only weights, health ---------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_offline_env_everywhere(engine: str) -> None:
    files = _render(context(engine))
    assert _service(files)["environment"]["HF_HUB_OFFLINE"] == "1"
    assert {"name": "TRANSFORMERS_OFFLINE", "value": "1"} in _container(files)["env"]
    assert b'--env "HF_HUB_OFFLINE=1"' in files["systemd/airpack-demo-model.service"]
    assert b'Environment="HF_HUB_OFFLINE=1"' in files["systemd/airpack-demo-model.container"]


@pytest.mark.parametrize("engine", ENGINES)
def test_images_are_pinned(engine: str) -> None:
    files = _render(context(engine), weights="init-copy", weights_digest=DIGEST)
    text = b"".join(files.values()).decode()
    refs = re.findall(
        r'(?:image: |Image=|^  ")"?([^"\s]+(?:sha256|airpack\.local)[^"\s]*)', text, re.MULTILINE
    )
    assert refs, "no image reference found"
    for ref in refs:
        assert ref == IMAGE_ID or ref.endswith(DIGEST), ref
    assert ":latest" not in text
    assert _container(files)["image"] == f"reg.local:5000/ai/ghcr.io/example/{engine}@{DIGEST}"
    assert _service(files)["pull_policy"] == "never"


@pytest.mark.parametrize(
    "kw",
    [
        {"image_local": "vllm/vllm-openai:latest"},
        {"image_local": "airpack.local/demo:latest"},
        {"image_local": "vllm/vllm-openai:v0.27.1"},
        {"image_registry": "vllm/vllm-openai:v0.27.1"},
    ],
)
def test_unpinned_images_are_refused(kw: dict[str, str]) -> None:
    with pytest.raises(BuildError, match="image"):
        context("vllm", **kw)


def test_airpack_local_tag_is_accepted() -> None:
    files = _render(context("vllm", image_local="airpack.local/demo-model:1.0.0"), ("compose",))
    assert _service(files)["image"] == "airpack.local/demo-model:1.0.0"


@pytest.mark.parametrize("engine", ENGINES)
def test_weights_are_read_only(engine: str) -> None:
    files = _render(context(engine))
    assert {"type": "bind", "source": "/opt/airpack/demo/model", "target": "/models", "read_only": True} in (
        _service(files)["volumes"]
    )
    mounts = {m["name"]: m for m in _container(files)["volumeMounts"]}
    assert mounts["weights"]["readOnly"] is True
    assert b'/opt/airpack/demo/model:/models:ro"' in files["systemd/airpack-demo-model.service"]


def test_health_checks_and_probes() -> None:
    files = _render(context("llamacpp", start_period_s=900))
    hc = _service(files)["healthcheck"]
    assert hc["test"][:2] == ["CMD", "curl"] and hc["start_period"] == "900s"
    c = _container(files)
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 900
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_custom_engine_busybox_healthcheck() -> None:
    hc = _service(_render(context("custom"), ("compose",)))["healthcheck"]["test"]
    assert hc == ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]


def test_no_shell_image_gets_no_docker_health_cmd() -> None:
    files = _render(context("custom", image_has_shell=False), ("systemd", "compose"))
    assert b"--no-healthcheck" in files["systemd/airpack-demo-model.service"]
    assert "healthcheck" in _service(files)  # Compose uses the exec form, no shell needed


# ---- Kubernetes specifics ------------------------------------------------------------------------------------


def test_network_policy_denies_all_egress() -> None:
    np = _k8s(_render(context("vllm"), ("kubernetes",)), "networkpolicy")
    assert np["spec"]["policyTypes"] == ["Egress"] and np["spec"]["egress"] == []
    assert np["spec"]["podSelector"]["matchLabels"] == {"airpack.io/bundle": "demo-model"}


# ---- Ollama -----------------------------------------------------------------------------------------------


def test_ollama_modelfile_and_create_step() -> None:
    files = _render(context("ollama"))
    modelfile = files["ollama/Modelfile"].decode()
    assert "FROM /models/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf\n" in modelfile
    assert "PARAMETER num_ctx 4096" in modelfile
    svc = _service(files)
    assert "ollama create" in svc["entrypoint"][2] and svc["command"] == ["qwen2.5:0.5b"]
    assert svc["healthcheck"]["test"] == ["CMD", "/bin/ollama", "show", "qwen2.5:0.5b"]
    cm = _k8s(files, "ollama-modelfile")
    assert cm["data"]["Modelfile"] == modelfile


def test_ollama_refuses_split_gguf() -> None:
    with pytest.raises(SpecError, match="split GGUF"):
        context(
            "ollama",
            model_files=("m-00001-of-00002.gguf", "m-00002-of-00002.gguf"),
            main_gguf="m-00001-of-00002.gguf",
        )


def test_tgi_refuses_bin_only_weights_on_read_only_mount() -> None:
    with pytest.raises(BuildError, match=r"\.bin"):
        context("tgi", model_files=("config.json", "pytorch_model.bin"))
    context("tgi", model_files=("config.json", "pytorch_model.bin", "model.safetensors"))


def test_gguf_engines_need_a_gguf() -> None:
    with pytest.raises(SpecError, match="GGUF"):
        context("llamacpp", main_gguf=None)


def test_custom_fields_only_for_custom() -> None:
    with pytest.raises(SpecError, match="custom"):
        dataclasses.replace(context("vllm"), custom=context("custom").custom)


def test_templates_dir_is_the_checkout() -> None:
    assert templates_dir().resolve() == Path(__file__).resolve().parents[2] / "templates"
