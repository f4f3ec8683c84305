"""Runtime profiles: what airpack knows about each inference engine, as data.

Facts come from ``guide/runtimes-and-vram.md`` (sections 1 and 4); a ``[I]`` comment marks an inference the guide
could not verify. The profiles are deliberately plain data so the deploy templates and the compatibility checker
read the same facts; :func:`airpack.profiles.launch.build_invocation` turns a profile plus one deployment into
the container's argv and environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from airpack.errors import SpecError

# The engine names, defined here only: the spec, the planner and the templates all take them from the profiles.
ENGINES = ("vllm", "tgi", "llamacpp", "ollama", "sglang", "custom")

# Every engine gets these: the Hugging Face libraries must never try the hub (the guide, section 4, generic),
# and no telemetry leaves the host. TGI's Rust router compares HF_HUB_OFFLINE to exactly "1".
COMMON_OFFLINE_ENV: tuple[tuple[str, str], ...] = (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ("DO_NOT_TRACK", "1"),
)

TMP = "/tmp"  # noqa: S108 - inside the container: a tmpfs of its own (airpack.profiles.hardening)
_HOME_CACHES = (TMP, "/root/.cache", "/root/.triton", "/root/.config")

# Where a profile's health probe argv puts the probe URL and the served name.
URL = "{url}"
SERVED_NAME = "{served_name}"

_PY_PROBE = (
    "python3",
    "-c",
    "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)",
    URL,
)
_CURL_PROBE = ("curl", "-fsS", "-o", "/dev/null", "--max-time", "5", URL)


@dataclass(frozen=True)
class RuntimeProfile:
    """One engine's container interface. Flags are None where the engine has no such knob."""

    engine: str
    image: str  # repository of the default image
    tag: str  # default tag; the lock pins it to a digest, deploy files never use the tag
    cuda: str | None  # CUDA toolkit in the default image (the driver floor follows from it)
    port: int  # port the engine listens on inside the container (passed explicitly where possible)
    health_path: str
    # argv run inside the container ({url}, {served_name} substituted); None: airpack polls from outside.
    health_cmd: tuple[str, ...] | None
    # "refused": the port opens only when loaded; "503": /health says 503 while loading;
    # "lazy": healthy before any model is loaded (the probe must check the model itself).
    loading: str
    start_period_s: int  # minimum healthcheck start period; DeployContext may ask for more
    openai_endpoints: tuple[str, ...]
    image_entrypoint: tuple[str, ...]  # what the image runs; the API-key wrapper must exec it
    entrypoint: tuple[str, ...] | None = None  # override the image entrypoint (SGLang has none)
    model_args: tuple[str, ...] = ()  # {model_dir} / {model_file} substituted
    served_name_flag: str | None = None
    quantization_flag: str | None = None
    tp_flag: str | None = None
    context_flag: str | None = None
    context_env: str | None = None
    memory_fraction_flag: str | None = None
    host_flag: str | None = None
    port_flag: str | None = None
    listen_env: str | None = None  # one HOST:PORT variable (Ollama)
    api_key_file_flag: str | None = None  # best: the key never appears in argv or env
    api_key_env: str | None = None
    api_key_flag: str | None = None
    # Why an engine without any of the three cannot require a key; install refuses one (exit 2) with this reason.
    no_api_key: str | None = None
    formats: frozenset[str] = frozenset()
    writes_model_dir: str | None = None  # why the engine needs to write where the weights are, if it does
    offline_env: tuple[tuple[str, str], ...] = COMMON_OFFLINE_ENV
    shm_gib: int | None = None  # shared memory to give the container
    shm_always: bool = False  # False: only with tensor parallelism > 1
    needs_gguf: bool = False  # serves one GGUF file (DeployContext.main_gguf required)
    ollama_import: bool = False  # the model is imported into the engine's own store at start
    # Hardening (every target): the root filesystem is read-only where the engine allows it, with a tmpfs on each
    # folder it writes to (besides the mounts airpack gives it); see airpack.profiles.hardening.
    read_only_root: bool = True
    writable_dirs: tuple[str, ...] = (TMP,)

    @property
    def default_image(self) -> str:
        return f"{self.image}:{self.tag}"

    @property
    def api_key_supported(self) -> bool:
        return bool(self.api_key_file_flag or self.api_key_env or self.api_key_flag)


_OPENAI = ("/v1/models", "/v1/chat/completions", "/v1/completions")

PROFILES: dict[str, RuntimeProfile] = {
    "vllm": RuntimeProfile(
        engine="vllm",
        image="vllm/vllm-openai",
        # From v0.20 the unsuffixed tag is CUDA 13.0 (driver R580+); the "-cu129" suffix is CUDA 12.9.
        # Which v0.2x is newest in the guide's window is uncertain [I]; the spec should name its own tag.
        tag="v0.27.1",
        cuda="13.0",
        port=8000,
        health_path="/health",
        health_cmd=_PY_PROBE,  # the image is Python; curl in it is not verified [I]
        loading="refused",  # the socket opens after weights, KV profiling and CUDA graphs
        start_period_s=600,
        openai_endpoints=(*_OPENAI, "/v1/embeddings", "/v1/responses"),
        image_entrypoint=("vllm", "serve"),
        model_args=("{model_dir}",),  # positional; an absolute local path avoids every hub lookup
        served_name_flag="--served-model-name",
        quantization_flag="--quantization",
        tp_flag="--tensor-parallel-size",
        context_flag="--max-model-len",  # always set: the default is the model's full context
        memory_fraction_flag="--gpu-memory-utilization",  # default moved 0.9 -> 0.92; always set
        host_flag="--host",
        port_flag="--port",
        api_key_env="VLLM_API_KEY",  # or --api-key; /health stays open
        formats=frozenset(
            {"safetensors", "bin", "awq", "gptq", "fp8", "compressed-tensors", "bitsandbytes", "gguf-plugin"}
        ),
        offline_env=(*COMMON_OFFLINE_ENV, ("VLLM_NO_USAGE_STATS", "1")),
        # torch.compile / Triton / FlashInfer kernel caches under $HOME (root in the image) [I: the full list]
        writable_dirs=_HOME_CACHES,
        shm_gib=16,  # docs say --ipc=host or "a large --shm-size" for TP; 16 GiB is our choice [I]
    ),
    "tgi": RuntimeProfile(
        engine="tgi",
        image="ghcr.io/huggingface/text-generation-inference",
        tag="3.3.5",  # the docs' tag; git goes to v3.3.7. TGI is in maintenance mode.
        cuda="12.4",
        port=80,  # ENV PORT=80 in the image
        health_path="/health",
        health_cmd=_CURL_PROBE,  # curl in the runtime stage is [I]
        loading="refused",  # the router binds after the shards are ready [I]
        start_period_s=600,
        openai_endpoints=_OPENAI,
        image_entrypoint=("/tgi-entrypoint.sh",),
        model_args=("--model-id", "{model_dir}"),  # a local dir: the router skips the hub
        served_name_flag=None,  # none exists; /v1/models reports the model id
        quantization_flag="--quantize",
        tp_flag="--num-shard",
        context_flag="--max-total-tokens",
        memory_fraction_flag="--cuda-memory-fraction",
        host_flag="--hostname",
        port_flag="--port",
        api_key_env="API_KEY",  # launcher --api-key [env: API_KEY] (launcher.md)
        formats=frozenset(
            {"safetensors", "bin", "gptq", "awq", "marlin", "exl2", "fp8", "eetq", "bitsandbytes"}
        ),
        writes_model_dir="TGI converts .bin weights to safetensors at start, next to the weights",
        offline_env=(*COMMON_OFFLINE_ENV, ("USAGE_STATS", "off")),
        writable_dirs=(TMP, "/data", "/root/.cache"),  # /data: the image's HF cache; /tmp: shard sockets [I]
        shm_gib=1,
        shm_always=True,
    ),
    "llamacpp": RuntimeProfile(
        engine="llamacpp",
        image="ghcr.io/ggml-org/llama.cpp",
        # Pinned tags are server-cuda-b<build>; the guide names no build number, so the spec must give one.
        tag="server-cuda",
        cuda="12.8",  # server-cuda13 is CUDA 13.1
        port=8080,  # upstream default is moving to 9931: always passed explicitly
        health_path="/health",
        health_cmd=_CURL_PROBE,  # the official image has curl (its own HEALTHCHECK uses it, on :8080 only)
        loading="503",
        start_period_s=120,
        openai_endpoints=(*_OPENAI, "/v1/embeddings", "/v1/responses"),
        image_entrypoint=("/app/llama-server",),
        model_args=("-m", "{model_file}"),  # split GGUF: the first shard
        served_name_flag="--alias",
        context_flag="-c",  # 0 means the training context and --fit may shrink it silently
        host_flag="--host",
        port_flag="--port",
        api_key_file_flag="--api-key-file",  # also LLAMA_API_KEY / --api-key
        formats=frozenset({"gguf"}),
        needs_gguf=True,
    ),
    "ollama": RuntimeProfile(
        engine="ollama",
        image="ollama/ollama",
        tag="0.20.0",  # the guide says "0.20.x"; the exact newest patch is [I]
        cuda="12.8",  # ships cuda_v12 (12.8) and cuda_v13 (13.0) and picks at runtime; driver >= 550
        port=11434,
        health_path="/api/version",
        # "/" answers before any model exists; `ollama show NAME` fails until `ollama create` finished [I].
        health_cmd=("/bin/ollama", "show", SERVED_NAME),
        loading="lazy",
        start_period_s=300,  # covers `ollama create`, which copies the GGUF into the store
        openai_endpoints=(*_OPENAI, "/v1/embeddings"),
        image_entrypoint=("/bin/ollama", "serve"),
        context_env="OLLAMA_CONTEXT_LENGTH",  # the default depends on VRAM: always set
        listen_env="OLLAMA_HOST",
        # No API key support in Ollama (the guide lists none): installing with a key file is refused.
        no_api_key="Ollama has no API key of its own",
        formats=frozenset({"gguf"}),  # single-file GGUF only (sharded: ollama#5245)
        writes_model_dir=None,  # it copies the GGUF into its own store, never writes the weights folder
        offline_env=(
            *COMMON_OFFLINE_ENV,
            ("OLLAMA_NO_CLOUD", "1"),
            ("OLLAMA_NOPRUNE", "1"),
            ("OLLAMA_KEEP_ALIVE", "-1"),
        ),
        needs_gguf=True,
        ollama_import=True,
    ),
    "sglang": RuntimeProfile(
        engine="sglang",
        image="lmsysorg/sglang",  # not lmsys/sglang
        tag="v0.5.21",  # CUDA 13 only (driver R580+); v0.5.19-cu129 is the last CUDA 12 tag
        cuda="13.0",  # "a CUDA 13 environment"; the minor version is [I]
        port=30000,
        health_path="/health",
        health_cmd=_PY_PROBE,
        loading="refused",  # [I]
        start_period_s=600,
        openai_endpoints=(*_OPENAI, "/v1/embeddings"),
        image_entrypoint=("python3", "-m", "sglang.launch_server"),
        entrypoint=("python3", "-m", "sglang.launch_server"),  # the image has no serving entrypoint
        model_args=("--model-path", "{model_dir}"),
        served_name_flag="--served-model-name",
        quantization_flag="--quantization",
        tp_flag="--tp-size",
        context_flag="--context-length",
        memory_fraction_flag="--mem-fraction-static",
        host_flag="--host",  # the default is 127.0.0.1: always passed
        port_flag="--port",
        api_key_flag="--api-key",  # an env-var form is not documented in the guide [I]
        formats=frozenset(
            {"safetensors", "awq", "gptq", "fp8", "compressed-tensors", "bitsandbytes", "gguf"}
        ),
        writable_dirs=_HOME_CACHES,  # as vLLM [I]
        shm_gib=32,
        shm_always=True,
    ),
    # The spec supplies image, command, port and health; nothing else is assumed about the image.
    "custom": RuntimeProfile(
        engine="custom",
        image="",
        tag="",
        cuda=None,
        port=0,
        health_path="/health",
        health_cmd=None,
        loading="503",
        start_period_s=120,
        openai_endpoints=_OPENAI,
        image_entrypoint=(),
        offline_env=COMMON_OFFLINE_ENV,
        read_only_root=False,  # nothing is known about where the image writes
        writable_dirs=(),
    ),
}


def get_profile(engine: str) -> RuntimeProfile:
    """The profile for ``engine``; a SpecError naming the known engines otherwise."""
    try:
        return PROFILES[engine]
    except KeyError:
        raise SpecError(f"unknown engine {engine!r}", hint=f"use one of: {', '.join(ENGINES)}") from None
