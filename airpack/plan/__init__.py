"""The VRAM planner and compatibility checks: will this model run on that target, and with how much context?

Pure library: ``plan(facts, request)`` and ``compatibility_checks`` do no I/O; ``model_facts_from_dir`` and
``model_facts_from_headers`` read metadata only (config.json, safetensors headers, GGUF metadata), never weights.

Not imported here: ``plan.spec`` applies the planner to a spec (``airpack plan``, and ``airpack lock``, which
refuses a model that cannot fit), and ``plan.hub`` reads a Hub model's metadata for it.
"""

from airpack.plan.checks import compatibility_checks
from airpack.plan.estimate import kv_bytes_per_token, kv_cache_bytes, plan
from airpack.plan.facts import ModelFacts, Quantization
from airpack.plan.gguf_facts import GgufSummary, gguf_summary_from_prefix, read_gguf
from airpack.plan.gpus import GPUS, GpuInfo, known_gpu_names, lookup_gpu
from airpack.plan.inputs import model_facts_from_dir, model_facts_from_headers
from airpack.plan.models import Check, MemoryBudget, Plan, PlanRequest
from airpack.plan.quant import QuantCandidate, QuantChoice, choose_quant, gguf_candidates_from_dir
from airpack.plan.safetensors_facts import read_safetensors_header
from airpack.profiles import ENGINES

__all__ = [
    "ENGINES",
    "GPUS",
    "Check",
    "GgufSummary",
    "GpuInfo",
    "MemoryBudget",
    "ModelFacts",
    "Plan",
    "PlanRequest",
    "QuantCandidate",
    "QuantChoice",
    "Quantization",
    "choose_quant",
    "compatibility_checks",
    "gguf_candidates_from_dir",
    "gguf_summary_from_prefix",
    "known_gpu_names",
    "kv_bytes_per_token",
    "kv_cache_bytes",
    "lookup_gpu",
    "model_facts_from_dir",
    "model_facts_from_headers",
    "plan",
    "read_gguf",
    "read_safetensors_header",
]
