"""Runtime profiles: the facts per engine and the argv/env builder."""

from __future__ import annotations

import dataclasses

import pytest

from airpack.errors import SpecError
from airpack.profiles import ENGINES, PROFILES, get_profile
from airpack.profiles.launch import (
    API_KEY_PATH,
    Concat,
    CustomEngine,
    Deferred,
    Launch,
    build_invocation,
    concat,
    health_argv,
    substitute,
)


def _launch(**kw: object) -> Launch:
    base: dict[str, object] = {
        "served_name": "m",
        "listen_host": "0.0.0.0",  # noqa: S104
        "listen_port": 9000,
        "tensor_parallel": 2,
        "model_file": "/models/m.gguf",
        "context_length": 8192,
        "memory_fraction": 0.85,
    }
    base.update(kw)
    return Launch(**base)  # type: ignore[arg-type]


def test_every_engine_has_a_profile() -> None:
    assert set(PROFILES) == set(ENGINES) == {"vllm", "tgi", "llamacpp", "ollama", "sglang", "custom"}
    for engine in ENGINES:
        assert get_profile(engine).engine == engine


def test_unknown_engine_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="unknown engine 'vlm'"):
        get_profile("vlm")


@pytest.mark.parametrize("engine", ENGINES)
def test_offline_env_for_every_engine(engine: str) -> None:
    env = dict(get_profile(engine).offline_env)
    assert env["HF_HUB_OFFLINE"] == "1"  # TGI's router needs exactly "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"


def test_engine_specific_telemetry_is_off() -> None:
    assert dict(get_profile("vllm").offline_env)["VLLM_NO_USAGE_STATS"] == "1"
    assert dict(get_profile("tgi").offline_env)["USAGE_STATS"] == "off"
    assert dict(get_profile("ollama").offline_env)["OLLAMA_NO_CLOUD"] == "1"


def test_guide_facts() -> None:
    assert get_profile("sglang").image == "lmsysorg/sglang"
    assert get_profile("tgi").port == 80
    assert get_profile("llamacpp").loading == "503"
    assert get_profile("vllm").loading == "refused"
    assert get_profile("tgi").writes_model_dir
    assert get_profile("llamacpp").formats == frozenset({"gguf"})
    assert get_profile("vllm").cuda == "13.0"
    for engine in ENGINES:
        assert get_profile(engine).tag != "latest"


def test_vllm_argv() -> None:
    inv = build_invocation(get_profile("vllm"), _launch())
    assert inv.entrypoint is None
    args = list(inv.args)
    assert args[0] == "/models"
    assert args[args.index("--served-model-name") + 1] == "m"
    assert args[args.index("--tensor-parallel-size") + 1] == 2
    assert args[args.index("--max-model-len") + 1] == 8192
    assert args[args.index("--gpu-memory-utilization") + 1] == 0.85
    assert args[args.index("--port") + 1] == 9000


def test_llamacpp_argv_and_key_file() -> None:
    inv = build_invocation(get_profile("llamacpp"), _launch(api_key_file=API_KEY_PATH))
    args = list(inv.args)
    assert args[:2] == ["-m", "/models/m.gguf"]
    assert args[args.index("--alias") + 1] == "m"
    assert args[args.index("-c") + 1] == 8192
    assert args[-2:] == ["--api-key-file", API_KEY_PATH]
    assert "--tensor-parallel-size" not in args


def test_tgi_has_no_served_name_flag_and_uses_model_id() -> None:
    args = list(build_invocation(get_profile("tgi"), _launch()).args)
    assert args[:2] == ["--model-id", "/models"]
    assert args[args.index("--num-shard") + 1] == 2
    assert "--served-model-name" not in args


def test_sglang_overrides_entrypoint() -> None:
    inv = build_invocation(get_profile("sglang"), _launch())
    assert inv.entrypoint == ("python3", "-m", "sglang.launch_server")
    assert list(inv.args)[:2] == ["--model-path", "/models"]


def test_env_api_key_goes_through_a_shell_not_argv() -> None:
    inv = build_invocation(get_profile("vllm"), _launch(api_key_file=API_KEY_PATH))
    assert inv.entrypoint is not None
    assert inv.entrypoint[:2] == ("/bin/sh", "-c")
    assert "VLLM_API_KEY" in str(inv.entrypoint[2]) and API_KEY_PATH in str(inv.entrypoint[2])
    assert inv.args[:2] == ("vllm", "serve")  # the wrapper execs the image's own entrypoint
    assert "--api-key" not in inv.args


def test_ollama_imports_gguf_and_sets_env() -> None:
    inv = build_invocation(get_profile("ollama"), _launch(listen_port=Deferred("host.port")))
    assert inv.entrypoint is not None and "ollama create" in str(inv.entrypoint[2])
    assert "pull" not in str(inv.entrypoint[2])
    assert inv.args == ("m",)
    env = dict(inv.env)
    assert env["OLLAMA_CONTEXT_LENGTH"] == "8192"
    assert env["OLLAMA_HOST"] == Concat(("0.0.0.0:", Deferred("host.port")))


def test_ollama_refuses_api_key() -> None:
    with pytest.raises(SpecError, match="cannot require an API key"):
        build_invocation(
            dataclasses.replace(get_profile("ollama"), ollama_import=False),
            _launch(api_key_file=API_KEY_PATH),
        )


def test_extra_env_overrides_profile_env() -> None:
    inv = build_invocation(get_profile("vllm"), _launch(extra_env=(("DO_NOT_TRACK", "0"), ("X", "y"))))
    env = dict(inv.env)
    assert env["DO_NOT_TRACK"] == "0" and env["X"] == "y"
    assert [k for k, _ in inv.env].count("DO_NOT_TRACK") == 1


def test_custom_engine_placeholders() -> None:
    custom = CustomEngine(command=("--port={port}", "{model_dir}/x", "{served_name}"), port=8080)
    inv = build_invocation(get_profile("custom"), _launch(custom=custom, listen_port=Deferred("host.port")))
    assert inv.args == (Concat(("--port=", Deferred("host.port"))), "/models/x", "m")


def test_custom_engine_unknown_placeholder() -> None:
    custom = CustomEngine(command=("--port={prot}",), port=8080)
    with pytest.raises(SpecError, match=r"unknown placeholder '\{prot\}'"):
        build_invocation(get_profile("custom"), _launch(custom=custom))


def test_custom_engine_needs_its_command() -> None:
    with pytest.raises(SpecError, match="custom"):
        build_invocation(get_profile("custom"), _launch())


def test_concat_and_substitute() -> None:
    assert concat("a", 1, "b") == "a1b"
    assert substitute('{"json": true}', {}, "x") == '{"json": true}'  # JSON braces are not placeholders
    assert concat("", Deferred("host.port")) == Concat((Deferred("host.port"),))


def test_health_argv() -> None:
    assert health_argv(get_profile("custom"), "u", "m") is None  # polled from outside
    assert health_argv(get_profile("llamacpp"), "http://x/health", "m") == (
        "curl",
        "-fsS",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        "http://x/health",
    )
    assert health_argv(get_profile("ollama"), "u", "qwen:1b") == ("/bin/ollama", "show", "qwen:1b")
