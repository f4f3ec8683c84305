"""What ``doctor`` looks at, gathered once: the host's facts and a bundle's needs, as plain frozen data.

Gathering is the only part that touches the system (the docker API, ``nvidia-smi``, ``statvfs``); the checks in
``airpack.install.doctor`` are pure functions of these two objects, so tests build them by hand.
"""

from __future__ import annotations

import contextlib
import json
import platform as _platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airpack._fs import read_capped
from airpack.bundle_layout import IMAGES_DIR, Manifest
from airpack.oci.reference import parse_reference

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
_SMI_QUERY = ("nvidia-smi", "--query-gpu=driver_version,memory.total,memory.used,name",
              "--format=csv,noheader,nounits")
_CUDA_ENV = re.compile(r"^CUDA_VERSION=(\d+)\.(\d+)")
_CUDA_REQ = re.compile(r"cuda>=(\d+)\.(\d+)")
MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as ``nvidia-smi`` reports it (MiB)."""

    index: int
    name: str
    driver: str
    total_mib: int
    used_mib: int

    @property
    def free_bytes(self) -> int:
        return max(0, self.total_mib - self.used_mib) * 2**20


@dataclass(frozen=True)
class HostFacts:
    """The host, as seen at one moment. ``None`` means "could not be found out" (the ``*_error`` says why)."""

    os: str
    arch: str
    docker_version: str | None = None
    docker_error: str | None = None
    runtimes: tuple[str, ...] = ()
    docker_root: str | None = None
    docker_root_free: int | None = None
    nvidia_smi: bool = False
    gpus: tuple[Gpu, ...] = ()
    smi_error: str | None = None
    cdi_specs: tuple[str, ...] = ()
    prefix: str = ""
    prefix_free: int | None = None
    mem_available: int | None = None


@dataclass(frozen=True)
class BundleNeeds:
    """What one bundle asks of the host, read from its manifest (and its runtime image's config)."""

    name: str
    version: str
    platform: str = "linux/amd64"
    gpus: int = 0
    engine: str | None = None
    cuda: str | None = None  # "12.8": the CUDA toolkit in the runtime image, when known
    per_gpu_bytes: int | None = None  # the plan's need per GPU
    host_bytes: int | None = None  # the plan's need in host RAM (CPU plans)
    model_bytes: int = 0
    image_bytes: int = 0
    layer_media_types: tuple[str, ...] = field(default=())


# ---- the host ---------------------------------------------------------------------------------------------


def _docker_facts(client: Any) -> dict[str, Any]:
    import docker.errors  # noqa: PLC0415

    try:
        if client is None:
            client = docker.from_env(timeout=10)
        info = client.info()
        version = str(client.version().get("Version") or info.get("ServerVersion") or "")
    except (docker.errors.DockerException, OSError) as exc:
        return {"docker_error": f"{type(exc).__name__}: {exc}"[:300]}
    root = str(info.get("DockerRootDir") or "") or None
    root_free = None
    if root:
        with contextlib.suppress(OSError):
            root_free = shutil.disk_usage(root).free  # only when the engine runs on this filesystem
    return {"docker_version": version or None, "runtimes": tuple(sorted((info.get("Runtimes") or {}).keys())),
            "docker_root": root, "docker_root_free": root_free}


def parse_smi(text: str) -> tuple[Gpu, ...]:
    """Rows of ``nvidia-smi --query-gpu=driver_version,memory.total,memory.used,name --format=csv,noheader``."""
    gpus = []
    for i, line in enumerate(t for t in text.splitlines() if t.strip()):
        parts = [p.strip() for p in line.split(",", 3)]
        if len(parts) != 4:
            raise ValueError(f"unexpected nvidia-smi line {line!r}")
        total, used = (int(re.sub(r"[^0-9]", "", p) or 0) for p in parts[1:3])
        gpus.append(Gpu(i, parts[3], parts[0], total, used))
    return tuple(gpus)


def _smi_facts() -> dict[str, Any]:
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(_SMI_QUERY, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"nvidia_smi": True, "smi_error": str(exc)}
    if out.returncode != 0:
        return {"nvidia_smi": True, "smi_error": (out.stderr or out.stdout).strip()[:300]}
    try:
        return {"nvidia_smi": True, "gpus": parse_smi(out.stdout)}
    except ValueError as exc:
        return {"nvidia_smi": True, "smi_error": str(exc)}


def existing_parent(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists (the prefix may not exist before install)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mem_available() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def gather_host(prefix: Path, client: Any = None) -> HostFacts:
    """Look at this host: OS, docker engine, NVIDIA driver and runtime, disk at ``prefix``, memory."""
    free = None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(existing_parent(prefix)).free
    cdi = tuple(sorted(str(p) for d in CDI_DIRS if d.is_dir() for p in d.iterdir()
                       if p.suffix in (".yaml", ".yml", ".json")))
    return HostFacts(os=_platform.system().lower(), arch=_ARCH.get(_platform.machine().lower(),
                                                                   _platform.machine().lower()),
                     cdi_specs=cdi, prefix=str(prefix), prefix_free=free, mem_available=_mem_available(),
                     **_docker_facts(client), **_smi_facts())


# ---- the bundle -------------------------------------------------------------------------------------------


def _cuda_from_config(bundle: Path, config_digest: str) -> str | None:
    """``CUDA_VERSION`` (or ``NVIDIA_REQUIRE_CUDA``) from the runtime image's config in the bundle's layout."""
    hexd = config_digest.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", hexd):
        return None
    path = bundle / IMAGES_DIR / "blobs" / "sha256" / hexd
    try:
        config = json.loads(read_capped(path, MAX_CONFIG_BYTES))  # doctor reads an unverified bundle: no FIFO
    except (OSError, ValueError):
        return None
    env = (config.get("config") or {}).get("Env") or [] if isinstance(config, dict) else []
    for item in env:
        if m := _CUDA_ENV.match(str(item)):
            return f"{m.group(1)}.{m.group(2)}"
    for item in env:
        if str(item).startswith("NVIDIA_REQUIRE_CUDA=") and (m := _CUDA_REQ.search(str(item))):
            return f"{m.group(1)}.{m.group(2)}"
    return None


def _runtime_cuda(bundle: Path | None, manifest: Manifest, engine: str | None) -> str | None:
    runtime = next((i for i in manifest.images if i.get("role") == "runtime"), None)
    if runtime is None:
        return None
    if bundle is not None and (cuda := _cuda_from_config(bundle, str(runtime.get("configDigest", "")))):
        return cuda
    if engine:  # the profile knows the CUDA of its own default image only
        from airpack.profiles import PROFILES  # noqa: PLC0415

        profile = PROFILES.get(engine)
        with contextlib.suppress(ValueError):
            if profile and parse_reference(str(runtime.get("ref"))).name.endswith(profile.image):
                return profile.cuda
    return None


def _plan_bytes(plan: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """(per-GPU bytes, host bytes) from the planner's ``Plan.to_dict()``; unknown shapes give Nones."""
    if not isinstance(plan, dict):
        return None, None
    with contextlib.suppress(TypeError, ValueError, KeyError):
        if plan.get("device") == "host":
            return None, int(plan["required_bytes"])
        return int(plan["per_gpu"]["required_bytes"]), None
    return None, None


def bundle_needs(manifest: Manifest, bundle: Path | None = None) -> BundleNeeds:
    """What ``manifest`` needs of a host. ``bundle`` (its folder) lets the runtime image's CUDA be read."""
    spec = manifest.spec if isinstance(manifest.spec, dict) else {}
    target = spec.get("target") or {}
    runtime = spec.get("runtime") or {}
    engine = str(runtime["engine"]) if runtime.get("engine") else None
    gpus = target.get("gpus", 1 if runtime else 0)
    per_gpu, host = _plan_bytes(manifest.plan)
    media = sorted({str(mt) for i in manifest.images for mt in i.get("layerMediaTypes") or ()})
    return BundleNeeds(
        name=manifest.name, version=manifest.version, platform=str(target.get("platform") or "linux/amd64"),
        gpus=int(gpus) if isinstance(gpus, int) else 0, engine=engine,
        cuda=_runtime_cuda(bundle, manifest, engine) if gpus else None,
        per_gpu_bytes=per_gpu, host_bytes=host,
        model_bytes=sum(e.size for e in manifest.files if e.kind == "model"),
        image_bytes=sum(e.size for e in manifest.files if e.kind == "images"),
        layer_media_types=tuple(media),
    )
