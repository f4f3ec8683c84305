"""Will the model run on the target at all? Weight format vs engine, quantization vs GPU, tensor parallel, driver.

Each check returns pass, warn or fail with a message that names the fix or what would work instead. Checks
that cannot be evaluated (no driver given, engine "custom") are left out rather than guessed.
"""

from __future__ import annotations

from airpack.plan.engines import GGUF_ENGINES, TP_ENGINES, kv_split_ok, resolve_engine
from airpack.plan.facts import ModelFacts
from airpack.plan.gpus import GpuInfo
from airpack.plan.models import Check, PlanRequest, parse_version

_ENGINE_NAMES = {
    "vllm": "vLLM",
    "tgi": "TGI",
    "sglang": "SGLang",
    "llamacpp": "llama.cpp",
    "ollama": "Ollama",
    "custom": "custom",
}

# Compute capability floors (runtimes-and-vram.md §1.1 vLLM "quantization/supported_hardware" and §1.6):
# AWQ needs Turing+, GPTQ Volta+, Marlin Ampere+, FP8 W8A8 Ada/Hopper+.
_QUANT_FLOOR: dict[str, tuple[tuple[int, int], str]] = {
    "awq": ((7, 5), "AWQ"),
    "gptq": ((7, 0), "GPTQ"),
    "fp8-weight-only": ((8, 0), "FP8 weight-only (Marlin)"),
    "w4a16": ((8, 0), "4-bit compressed-tensors (Marlin)"),
    "w8a16": ((8, 0), "8-bit compressed-tensors weight-only (Marlin)"),
    "int8": ((7, 5), "INT8 W8A8"),
}
FP8_W8A8_CC = (8, 9)
MARLIN_CC = (8, 0)
BF16_CC = (8, 0)

# Engine floors (§1.1, §1.4, §1.5, §1.6): vLLM "compute capability 7.5 or higher"; SGLang FlashInfer >= 7.5;
# Ollama >= 5.0. TGI's kernels are built for SM 8.0/8.6/9.0.
_ENGINE_FLOOR: dict[str, tuple[int, int]] = {"vllm": (7, 5), "sglang": (7, 5), "ollama": (5, 0)}


def _cc(gpu: GpuInfo) -> str:
    return f"{gpu.name} (compute capability {gpu.compute_capability_str})"


def _fmt_cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def format_check(facts: ModelFacts, engine: str) -> Check:
    """Weight format vs engine: GGUF is for llama.cpp/Ollama; safetensors (plain or quantized) for the others."""
    name = _ENGINE_NAMES[engine]
    quant = facts.quantization
    if engine == "custom":
        return Check(
            "format", "pass", f"{facts.weight_format} {quant.label}: not checked for a custom engine"
        )
    if facts.is_gguf:
        if engine == "ollama" and facts.gguf_shards > 1:
            return Check(
                "format",
                "fail",
                f"Ollama does not load split GGUF ({facts.gguf_shards} shards; ollama#5245): merge them with "
                "'llama-gguf-split --merge' first, or serve with llama.cpp",
            )
        if engine in GGUF_ENGINES:
            return Check("format", "pass", f"GGUF {quant.label} runs on {name}")
        return Check(
            "format",
            "fail",
            f"GGUF weights need llama.cpp or Ollama, not {name} (vLLM only through the experimental "
            "vllm-gguf-plugin): use engine llamacpp or ollama, or bundle the safetensors checkpoint",
        )
    if engine in GGUF_ENGINES:
        kind = "quantized" if quant.scheme != "none" else quant.label
        return Check(
            "format",
            "fail",
            f"{name} serves GGUF, not {kind} safetensors ({quant.label}): bundle a GGUF variant of the model, "
            "or serve these weights with vLLM, TGI or SGLang",
        )
    if quant.scheme == "exl2" and engine != "tgi":
        return Check("format", "fail", f"{name} has no EXL2 support: use TGI, or an AWQ/GPTQ variant")
    if quant.scheme == "other":
        return Check(
            "format",
            "warn",
            f"quantization {quant.label!r} is not one airpack knows; check that {name} supports it",
        )
    return Check("format", "pass", f"safetensors {quant.label} runs on {name}")


def engine_gpu_check(engine: str, req: PlanRequest) -> Check | None:
    """The engine's own GPU floor, or whether it can run on the host at all."""
    name = _ENGINE_NAMES[engine]
    if engine == "custom":
        return None
    if req.host:
        if engine in GGUF_ENGINES:
            return Check("engine_gpu", "pass", f"{name} runs on the CPU from host RAM")
        return Check(
            "engine_gpu",
            "fail",
            f"{name} needs a GPU: plan with --gpus 1 or more, or use a GGUF variant with llama.cpp or Ollama on CPU",
        )
    if req.gpu is None:
        return None
    cc = req.gpu.compute_capability
    floor = _ENGINE_FLOOR.get(engine)
    if floor is not None and cc < floor:
        other = "llama.cpp" if engine != "ollama" else "an older Ollama release"
        return Check(
            "engine_gpu",
            "fail",
            f"{name} needs compute capability {_fmt_cc(floor)} or higher; {_cc(req.gpu)} is below it: use {other}",
        )
    if engine == "tgi" and (cc < (8, 0) or cc[0] > 9):
        return Check(
            "engine_gpu",
            "warn",
            f"TGI's flash/paged-attention kernels are built for SM 8.0/8.6/9.0; {_cc(req.gpu)} runs without them "
            "(slower, less context): prefer vLLM or SGLang",
        )
    return Check("engine_gpu", "pass", f"{name} supports {_cc(req.gpu)}")


def quantization_check(facts: ModelFacts, engine: str, gpu: GpuInfo | None) -> Check | None:
    """Quantization scheme vs the GPU's compute capability."""
    scheme = facts.quantization.scheme
    label = facts.quantization.label
    if scheme in ("none", "gguf", "bitsandbytes", "exl2", "other") or engine in GGUF_ENGINES:
        return None
    if scheme == "fp8":
        if gpu is None:
            return Check("quantization", "warn", f"{label} needs compute capability 8.0+ (8.9+ for FP8 compute): "
                         "name the GPU (--gpu) to check")  # fmt: skip
        cc = gpu.compute_capability
        if cc >= FP8_W8A8_CC:
            return Check("quantization", "pass", f"FP8 W8A8 runs natively on {_cc(gpu)}")
        if cc >= MARLIN_CC:
            return Check(
                "quantization",
                "warn",
                f"FP8 W8A8 needs compute capability 8.9+; on {_cc(gpu)} it runs weight-only through Marlin "
                "(FP16 activations, slower): fine to serve, or pick an AWQ/GPTQ variant",
            )
        return Check(
            "quantization",
            "fail",
            f"FP8 needs compute capability 8.0+ (weight-only) or 8.9+ (W8A8); {_cc(gpu)} has neither: "
            "use an AWQ or GPTQ variant, or a GGUF with llama.cpp",
        )
    floor_name = _QUANT_FLOOR.get(scheme)
    if floor_name is None:
        return None
    floor, what = floor_name
    if gpu is None:
        return Check(
            "quantization",
            "warn",
            f"{what} needs compute capability {_fmt_cc(floor)}+: name the GPU (--gpu) to check",
        )
    if gpu.compute_capability >= floor:
        return Check("quantization", "pass", f"{what} runs on {_cc(gpu)}")
    instead = "a GPTQ variant or " if scheme == "awq" and gpu.compute_capability >= (7, 0) else ""
    return Check(
        "quantization",
        "fail",
        f"{what} needs compute capability {_fmt_cc(floor)}+; {_cc(gpu)} is below it: use {instead}"
        "an fp16 checkpoint, or a GGUF with llama.cpp",
    )


def dtype_check(facts: ModelFacts, engine: str, gpu: GpuInfo | None) -> Check | None:
    """bf16 checkpoints on GPUs older than Ampere are cast to fp16, which a few models overflow in."""
    if facts.is_gguf or engine in GGUF_ENGINES or gpu is None or facts.quantization.scheme != "none":
        return None
    if facts.dtype == "bfloat16" and gpu.compute_capability < BF16_CC:
        return Check(
            "dtype",
            "warn",
            f"bfloat16 needs compute capability 8.0+; {_cc(gpu)} serves this model cast to float16 "
            "(same memory; some models overflow in fp16 and produce NaN or garbage): test before shipping",
        )
    if facts.dtype == "float32":
        return Check("dtype", "pass", "float32 checkpoint: served in 16-bit, half its file size in memory")
    return Check("dtype", "pass", f"{facts.dtype or 'the dtype'} runs on {_cc(gpu)}")


def tensor_parallel_check(facts: ModelFacts, engine: str, req: PlanRequest) -> Check | None:
    """vLLM, TGI and SGLang split attention heads across GPUs; llama.cpp and Ollama split by layer."""
    if req.host:
        return None
    name = _ENGINE_NAMES[engine]
    if engine in GGUF_ENGINES:
        note = " (tensor_parallel is ignored)" if req.tensor_parallel not in (None, 1) else ""
        return Check(
            "tensor_parallel", "pass", f"{name} splits the model by layer over {req.gpus} GPU(s){note}"
        )
    if engine not in TP_ENGINES:
        return None
    tp = req.tensor_parallel or req.gpus
    heads, kv_heads = facts.num_attention_heads, facts.num_kv_heads
    problems = []
    if tp > req.gpus:
        problems.append(f"tensor parallel size {tp} is more than the {req.gpus} GPU(s)")
    if heads % tp:
        problems.append(f"{tp} does not divide the {heads} attention heads")
    elif not kv_split_ok(kv_heads, tp):
        problems.append(f"{tp} cannot split or evenly replicate the {kv_heads} KV heads")
    if problems:
        valid = [n for n in range(1, req.gpus + 1) if heads % n == 0 and kv_split_ok(kv_heads, n)]
        return Check(
            "tensor_parallel",
            "fail",
            f"{name}: {'; '.join(problems)}: use a tensor parallel size of {', '.join(map(str, valid))}",
        )
    if tp < req.gpus:
        return Check(
            "tensor_parallel",
            "warn",
            f"tensor parallel size {tp} uses {tp} of {req.gpus} GPUs: the rest stay idle unless you run replicas",
        )
    return Check("tensor_parallel", "pass", f"tensor parallel size {tp} divides the {heads} attention heads")


# ---- driver vs image CUDA ------------------------------------------------------------------------------------
# Facts from runtimes-and-vram.md §1.6, verbatim:
#   Minor-version compatibility (NVIDIA "CUDA Minor Version Compatibility", Table 1):
#     CUDA 13.x: minimum driver >= 580; CUDA 12.x: >= 525 (precisely 525.60.13); CUDA 11.x: >= 450 (450.80.02).
#   Driver bundled with each toolkit (the "full feature" driver, needed for PTX JIT and new features; runfile names
#   cuda_<ver>_<driver>_linux.run and arrayfire's CudaToDriverVersion table):
#     12.0 (U1) 525.85 (GA 525.60.13) | 12.1 530.30 | 12.2 535.104 (U2) | 12.3 545.23 |
#     12.4.0 / 12.4.1 550.54.14 [I] / 550.54.15 | 12.5 555.42 | 12.6.0 / .2 / .3 560.28.03 / 560.35.03 / 560.35.05 |
#     12.8.0 / 12.8.1 570.86.x [I] / 570.124.06 | 12.9.0 / 12.9.1 575.51.03 [I] / 575.57.08 |
#     13.0.0 / .1 / .2 580.65.06 / 580.82.07 / 580.95.05 | 13.1 590.x [I]
#   "nvidia/cuda base images set NVIDIA_REQUIRE_CUDA="cuda>=X.Y brand=tesla,driver>=470,driver<471 …", and
#   nvidia-container-cli refuses to start a container on an older driver with `requirement error: unsatisfied
#   condition: cuda>=12.8, please update your driver…`" (llama.cpp#9665, vllm#5635, tabbyAPI#324). "The brand/driver
#   ranges are datacenter forward-compatibility carve-outs (compat libs in /usr/local/cuda/compat)."
#   "minor-version compatibility does not cover PTX JIT. vLLM kernels fail with `CUDA error: the provided PTX was
#   compiled with an unsupported toolchain` on drivers older than the image toolkit" (vllm#31700, #25143).
#   "FAIL for CUDA 13 images on drivers <580 unless the GPU is datacenter-class and the runtime supports forward
#   compat (vLLM's VLLM_ENABLE_CUDA_COMPATIBILITY=1)"; §1.1: it "lets CUDA-13 images run on R535/R570 datacenter
#   GPUs only".
# Policy: pass at or above the bundled driver; below it, fail, except on the datacenter forward-compatibility path
# (warn): a datacenter GPU on a driver at or above the family minimum (CUDA 12), or vLLM's CUDA 13 forward-compat
# on R535/R570.
FAMILY_MIN_DRIVER: dict[int, tuple[int, ...]] = {13: (580,), 12: (525, 60, 13), 11: (450, 80, 2)}
BUNDLED_DRIVER: dict[tuple[int, ...], tuple[int, ...]] = {
    (12, 0): (525, 60, 13),
    (12, 1): (530, 30),
    (12, 2): (535, 104),
    (12, 3): (545, 23),
    (12, 4, 0): (550, 54, 14),
    (12, 4, 1): (550, 54, 15),
    (12, 5): (555, 42),
    (12, 6, 0): (560, 28, 3),
    (12, 6, 2): (560, 35, 3),
    (12, 6, 3): (560, 35, 5),
    (12, 8, 0): (570, 86),
    (12, 8, 1): (570, 124, 6),
    (12, 9, 0): (575, 51, 3),
    (12, 9, 1): (575, 57, 8),
    (13, 0, 0): (580, 65, 6),
    (13, 0, 1): (580, 82, 7),
    (13, 0, 2): (580, 95, 5),
    (13, 1): (590,),
}
VLLM_CUDA13_COMPAT_BRANCHES = (535, 570)
# Image CUDA when the caller does not say (§1.1-1.5): vLLM >= v0.20 unsuffixed tags 13.0; TGI base 12.4.0;
# llama.cpp server-cuda 12.8.1; SGLang CUDA 13 only. Ollama ships CUDA 12.8 and 13.0 libraries and picks one.
DEFAULT_IMAGE_CUDA: dict[str, str] = {"vllm": "13.0", "tgi": "12.4.0", "llamacpp": "12.8.1", "sglang": "13.0"}
# Ollama docs: "driver version 550 and newer; CC 5.0-6.2 require 570 or newer"; older drivers fall back to CPU.
OLLAMA_MIN_DRIVER = (550,)
OLLAMA_OLD_GPU_MIN_DRIVER = (570,)


def bundled_driver(cuda: tuple[int, ...]) -> tuple[int, ...] | None:
    """The oldest driver bundled with any release of CUDA major.minor: the first one that reports that CUDA
    version, which is what NVIDIA_REQUIRE_CUDA ("cuda>=X.Y") compares. Patch releases share PTX support."""
    drivers = [d for k, d in BUNDLED_DRIVER.items() if k[:2] == tuple(cuda[:2])]
    return min(drivers) if drivers else None


def _v(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version)


def driver_check(engine: str, req: PlanRequest) -> Check | None:
    """Target driver vs the serving image's CUDA toolkit (see the facts above)."""
    if req.driver is None or req.host:
        return None
    driver = parse_version(req.driver)
    gpu = req.gpu
    if engine == "ollama":
        old_gpu = gpu is not None and gpu.compute_capability < (7, 0)
        need = OLLAMA_OLD_GPU_MIN_DRIVER if old_gpu else OLLAMA_MIN_DRIVER
        if driver >= need:
            return Check("driver", "pass", f"driver {req.driver} meets Ollama's minimum {_v(need)}")
        return Check(
            "driver",
            "fail",
            f"Ollama needs driver {_v(need)} or newer; on {req.driver} it silently falls back to the CPU "
            "(discover/cuda_compat.go): upgrade the driver",
        )
    assumed = ""
    cuda_text = req.image_cuda
    if cuda_text is None:
        cuda_text = DEFAULT_IMAGE_CUDA.get(engine)
        if cuda_text is None:
            return None
        assumed = f" (assumed: {_ENGINE_NAMES[engine]}'s default image is CUDA {cuda_text}; say image_cuda)"
    cuda = parse_version(cuda_text)
    family_min = FAMILY_MIN_DRIVER.get(cuda[0])
    bundled = bundled_driver(cuda) or family_min
    if bundled is None or family_min is None:
        return Check(
            "driver", "warn", f"CUDA {cuda_text} is not in airpack's driver table: check by hand{assumed}"
        )
    if driver >= bundled:
        return Check(
            "driver", "pass", f"driver {req.driver} >= {_v(bundled)}, bundled with CUDA {cuda_text}{assumed}"
        )
    refuse = (
        f"driver {req.driver} is older than {_v(bundled)}, the driver bundled with the image's CUDA {cuda_text}: "
        f"nvidia-container-cli refuses it ('unsatisfied condition: cuda>={cuda[0]}.{cuda[1]}')"
    )
    fix = f"upgrade the driver to {_v(bundled)}+ or use an image built for an older CUDA{assumed}"
    if cuda[0] >= 13 and driver < family_min:
        compat = engine == "vllm" and driver[0] in VLLM_CUDA13_COMPAT_BRANCHES
        if compat and (gpu is None or gpu.datacenter):
            who = "" if gpu is not None else "only if the GPU is a datacenter part (name it with --gpu); "
            return Check(
                "driver",
                "warn",
                f"{refuse}; {who}runs through CUDA forward compatibility: set VLLM_ENABLE_CUDA_COMPATIBILITY=1 "
                f"(R535/R570 datacenter GPUs only), or {fix}",
            )
        alt = {"vllm": "the -cu129 tag", "sglang": "lmsysorg/sglang:v0.5.19-cu129"}.get(
            engine, "a CUDA 12 image"
        )
        return Check(
            "driver",
            "fail",
            f"CUDA {cuda_text} needs driver {_v(family_min)}+ and {req.driver} is below it: upgrade to R580+ "
            f"or use {alt}{assumed}",
        )
    if driver < family_min:
        return Check(
            "driver", "fail", f"{refuse}, and it is below CUDA {cuda[0]}'s minimum {_v(family_min)}: {fix}"
        )
    if gpu is not None and not gpu.datacenter:
        return Check(
            "driver",
            "fail",
            f"{refuse}, and {gpu.name} is not a datacenter GPU, so the forward-compatibility path is closed: {fix}",
        )
    who = "" if gpu is not None else "only if the GPU is a datacenter part (name it with --gpu); "
    return Check(
        "driver",
        "warn",
        f"{refuse} except on the datacenter forward-compatibility path: {who}it starts, but PTX-JIT kernels "
        f"can fail ('the provided PTX was compiled with an unsupported toolchain'): {fix}",
    )


def compatibility_checks(facts: ModelFacts, req: PlanRequest) -> tuple[Check, ...]:
    """Every check that does not depend on memory: format, engine GPU floor, quantization, dtype, TP, driver."""
    engine = resolve_engine(facts, req.engine)
    gpu = None if req.host else req.gpu
    found = [
        format_check(facts, engine),
        engine_gpu_check(engine, req),
        quantization_check(facts, engine, gpu),
        dtype_check(facts, engine, gpu),
        tensor_parallel_check(facts, engine, req),
        driver_check(engine, req),
    ]
    return tuple(c for c in found if c is not None)
