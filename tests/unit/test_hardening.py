"""Every engine container is confined the same way on every target (issue #14 item 10): no new privileges, every
capability dropped (NET_BIND_SERVICE back only below port 1024), a read-only root filesystem with a tmpfs or
emptyDir on each folder the engine writes to, the default seccomp profile. The rendered files still validate
(Compose schema, ``docker-compose config``, kubernetes-validate)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_helpers import IMAGE_ID, check_compose_schema, check_docker_compose, check_kubernetes, context

from airpack.install.engine import container_spec
from airpack.profiles import ENGINES, get_profile
from airpack.profiles.hardening import TMPFS_OPTIONS
from airpack.render import HostParams, default_host_params, render_bundle_deploy, render_host

RO_ENGINES = [e for e in ENGINES if e != "custom"]


def _files(engine: str, **host: Any) -> dict[str, bytes]:
    params = default_host_params("demo", **{"gpus": 1, "registry": "reg.local:5000/ai",
                                           "model_digest": "sha256:" + "ab" * 32, **host})
    return render_host(render_bundle_deploy(context(engine), ("compose", "kubernetes", "systemd")), params)


def _spec(engine: str, **host: Any):  # type: ignore[no-untyped-def]
    params = HostParams(**{"prefix": "/opt/airpack/demo", "port": 9000, "network": "host", "gpus": 0, **host})
    ctx = dataclasses.replace(context(engine), gpus=params.gpus)
    return container_spec(ctx, params, image_id=IMAGE_ID, digest="ab" * 32, name="airpack-demo-12345678")


@pytest.mark.parametrize("engine", ENGINES)
def test_docker_target_run_arguments(engine: str) -> None:
    kw = _spec(engine).run_kwargs()
    p = get_profile(engine)
    assert kw["cap_drop"] == ["ALL"] and kw["cap_add"] == []
    assert kw["security_opt"] == ["no-new-privileges:true"]
    assert kw["read_only"] is (engine != "custom")
    assert kw["tmpfs"] == ({d: TMPFS_OPTIONS for d in p.writable_dirs} if engine != "custom" else {})
    if engine != "custom":
        assert "/tmp" in kw["tmpfs"] and "exec" in kw["tmpfs"]["/tmp"].split(",")


def test_a_port_below_1024_gets_only_net_bind_service_back() -> None:
    assert _spec("llamacpp", port=80).run_kwargs()["cap_add"] == ["NET_BIND_SERVICE"]
    # TGI listens on 80 inside its own network namespace with bridge networking
    assert _spec("tgi", network="bridge", port=8080).run_kwargs()["cap_add"] == ["NET_BIND_SERVICE"]
    assert _spec("tgi", network="host", port=8080).run_kwargs()["cap_add"] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_compose_service_is_confined_and_validates(engine: str, tmp_path: Path) -> None:
    files = _files(engine, network="host", port=8000)
    doc = check_compose_schema(files["compose.yaml"])
    check_docker_compose(files["compose.yaml"], tmp_path)
    svc = doc["services"]["demo-model"]
    assert svc["cap_drop"] == ["ALL"] and "cap_add" not in svc
    assert svc["security_opt"] == ["no-new-privileges:true"]
    if engine == "custom":
        assert "read_only" not in svc and "tmpfs" not in svc
    else:
        assert svc["read_only"] is True
        assert svc["tmpfs"] == [f"{d}:{TMPFS_OPTIONS}" for d in get_profile(engine).writable_dirs]
    low = yaml.safe_load(_files(engine, network="host", port=80)["compose.yaml"])["services"]["demo-model"]
    assert low["cap_add"] == ["NET_BIND_SERVICE"]


@pytest.mark.parametrize("engine", ENGINES)
def test_systemd_and_quadlet_units_are_confined(engine: str) -> None:
    files = _files(engine, network="host", port=8000)
    unit = files["systemd/airpack-demo-model.service"].decode()
    quadlet = files["systemd/airpack-demo-model.container"].decode()
    assert "--cap-drop ALL --security-opt \"no-new-privileges:true\"" in unit and "--cap-add" not in unit
    assert "DropCapability=all" in quadlet and "NoNewPrivileges=true" in quadlet and "AddCapability" not in quadlet
    ro = engine != "custom"
    assert ("--read-only \\" in unit) is ro and ("ReadOnly=true" in quadlet) is ro
    for d in get_profile(engine).writable_dirs if ro else ():
        assert f'--tmpfs "{d}:{TMPFS_OPTIONS}"' in unit and f'PodmanArgs=--tmpfs "{d}:{TMPFS_OPTIONS}"' in quadlet
    low = _files(engine, network="host", port=80)
    assert "--cap-add NET_BIND_SERVICE" in low["systemd/airpack-demo-model.service"].decode()
    assert "AddCapability=NET_BIND_SERVICE" in low["systemd/airpack-demo-model.container"].decode()


@pytest.mark.parametrize("engine", ENGINES)
def test_kubernetes_security_context_and_scratch_volumes(engine: str) -> None:
    files = _files(engine)
    (deployment,) = check_kubernetes(files["kubernetes/deployment.yaml"])
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["capabilities"]["drop"] == ["ALL"]
    ctx = context(engine)
    port = ctx.custom.port if ctx.custom else ctx.profile.port
    assert sc["capabilities"].get("add", []) == (["NET_BIND_SERVICE"] if port < 1024 else [])
    assert sc["readOnlyRootFilesystem"] is (engine != "custom")
    scratch = {m["mountPath"]: m["name"] for m in c["volumeMounts"] if m["name"].startswith("scratch-")}
    assert sorted(scratch) == (sorted(get_profile(engine).writable_dirs) if engine != "custom" else [])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all(volumes[name] == {"name": name, "emptyDir": {}} for name in scratch.values())
