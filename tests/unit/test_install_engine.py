"""The docker container an install starts, decided as data: flags, mounts, networking, GPU requests."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from render_helpers import IMAGE_ID, context

from airpack.errors import InstallError
from airpack.install.engine import base_url, container_name, container_spec
from airpack.render import HostParams

KEY = "/opt/airpack/demo/secrets/api-key"


def spec_for(engine: str = "llamacpp", **host: object):  # type: ignore[no-untyped-def]
    params = HostParams(**{"prefix": "/opt/airpack/demo", "port": 9000, "network": "host", "gpus": 0,
                           "api_key_file": KEY, **host})  # type: ignore[arg-type]
    ctx = dataclasses.replace(context(engine), gpus=params.gpus)
    return container_spec(ctx, params, image_id=IMAGE_ID, digest="ab" * 32, name="airpack-demo-12345678")


def test_host_network_puts_address_and_port_in_the_engine_flags() -> None:
    s = spec_for()
    args = list(s.command)
    assert args[args.index("--host") + 1] == "127.0.0.1" and args[args.index("--port") + 1] == "9000"
    assert args[args.index("--api-key-file") + 1] == "/run/airpack-secrets/api-key"
    assert args[args.index("-m") + 1].startswith("/models/") and "-c" in args
    kw = s.run_kwargs()
    assert kw["network_mode"] == "host" and "ports" not in kw
    assert kw["image"] == IMAGE_ID  # the signed image ID, not a tag that could be re-pointed
    assert "device_requests" not in kw  # CPU: no GPU request at all
    assert dict(kw["environment"])["HF_HUB_OFFLINE"] == "1"
    mounts = {m["Target"]: m for m in kw["mounts"]}
    assert mounts["/models"]["Source"] == "/opt/airpack/demo/model" and mounts["/models"]["ReadOnly"]
    assert mounts["/run/airpack-secrets/api-key"]["Source"] == KEY
    assert kw["healthcheck"]["test"][:2] == ["CMD", "curl"]
    assert "http://127.0.0.1:9000/health" in kw["healthcheck"]["test"]
    assert dict(kw["labels"])["io.airpack.prefix"] == "/opt/airpack/demo"


def test_gpus_are_requested_only_when_the_bundle_needs_them() -> None:
    kw = spec_for(gpus=2).run_kwargs()
    (req,) = kw["device_requests"]
    assert req["Count"] == 2 and req["Capabilities"] == [["gpu"]] and req["Driver"] == "nvidia"


def test_bridge_publishes_the_port_and_listens_on_all_addresses_inside() -> None:
    s = spec_for(network="bridge", bind="127.0.0.1", port=9001)
    args = list(s.command)
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "8080"  # noqa: S104
    kw = s.run_kwargs()
    assert kw["ports"] == {"8080/tcp": ("127.0.0.1", 9001)} and "network_mode" not in kw


def test_no_api_key_leaves_the_flag_out() -> None:
    s = spec_for(api_key_file=None)
    assert "--api-key-file" not in s.command
    assert all(m[1] != "/run/airpack-secrets/api-key" for m in s.mounts)


def test_engine_without_key_support_is_refused_with_a_hint() -> None:
    with pytest.raises(InstallError, match="cannot require an API key") as exc:
        spec_for("ollama")
    assert "--no-api-key" in str(exc.value)
    s = spec_for("ollama", api_key_file=None)
    assert any(t == "/airpack/Modelfile" for _, t, _ in s.mounts)


def test_vllm_key_goes_through_a_shell_not_argv() -> None:
    s = spec_for("vllm", gpus=1)
    assert s.entrypoint is not None and s.entrypoint[0] == "/bin/sh"
    assert all("ap-" not in a for a in s.command)
    assert "shm_size" not in s.run_kwargs()  # vLLM needs a large /dev/shm only for tensor parallelism
    assert spec_for("vllm", gpus=2).run_kwargs()["shm_size"] == "16g"
    assert spec_for("sglang", gpus=1, api_key_file=None).run_kwargs()["shm_size"] == "32g"


def test_names_and_urls() -> None:
    a, b = container_name("demo", Path("/opt/a")), container_name("demo", Path("/opt/b"))
    assert a.startswith("airpack-demo-") and a != b and a == container_name("demo", Path("/opt/a"))
    assert base_url("0.0.0.0", 80) == "http://127.0.0.1:80"  # noqa: S104
    assert base_url("::", 80) == "http://[::1]:80"
    assert base_url("127.0.0.2", 80) == "http://127.0.0.2:80"
