"""``airpack doctor``: can this host run this bundle? Each check passes, warns or fails, and says the fix.

The checks are pure functions of :class:`~airpack.install.facts.HostFacts` and (optionally)
:class:`~airpack.install.facts.BundleNeeds`; ``doctor`` gathers both and runs every check, so one run reports
every problem, not just the first. ``install`` refuses to go on when any check fails.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airpack.bundle_layout import Manifest
from airpack.errors import CompatibilityError, InstallError
from airpack.install.facts import BundleNeeds, HostFacts, bundle_needs, gather_host
from airpack.oci.engine_load import unloadable_layers
from airpack.plan.checks import FAMILY_MIN_DRIVER, driver_check
from airpack.plan.checks import bundled_driver as plan_bundled_driver
from airpack.plan.gpus import lookup_gpu
from airpack.plan.models import PlanRequest, parse_version
from airpack.textsafe import escape
from airpack.tool.host import host_pythons, python_verdict, tool_of
from airpack.units import format_size

PASS, WARN, FAIL = "pass", "warn", "fail"
GIB = 2**30

@dataclass(frozen=True)
class Check:
    """One verdict: ``name`` is a stable word for scripts, ``fix`` what to do when it is not a pass."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def __post_init__(self) -> None:  # details quote the (unverified) manifest: no control character passes
        object.__setattr__(self, "detail", escape(self.detail))
        object.__setattr__(self, "fix", escape(self.fix) if self.fix is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]
    bundle: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == FAIL)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "bundle": self.bundle, "checks": [c.to_dict() for c in self.checks]}


def failed_checks(report: DoctorReport) -> InstallError:
    """Why an install stops at the host checks: every failed check with its fix, in one line."""
    parts = [f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in report.failures]
    return InstallError("the host cannot run this bundle: " + "; ".join(parts),
                        hint="'airpack doctor BUNDLE' shows every check")


def bundled_driver(cuda: str) -> str | None:
    """The driver the image's CUDA toolkit ships with (the planner's table; a minor it does not list falls back
    to the CUDA family's minimum), or None for a CUDA it does not know."""
    version = parse_version(cuda)
    found = plan_bundled_driver(version) or FAMILY_MIN_DRIVER.get(version[0])
    return ".".join(str(n) for n in found) if found else None


def driver_verdict(driver: str, cuda: str, *, engine: str | None = None, gpu_name: str | None = None,
                   ) -> tuple[str, str]:
    """(status, why) for an NVIDIA ``driver`` running an image built with CUDA ``cuda``: the planner's policy
    (``airpack.plan.checks.driver_check``), so lock and doctor judge one driver the same way; the GPU's name
    (from nvidia-smi) opens the datacenter forward-compatibility path the planner allows."""
    gpu = None
    if gpu_name:
        with contextlib.suppress(CompatibilityError):
            gpu = lookup_gpu(gpu_name)
    # The driver check reads no memory figure, but a request without a GPU must name one: any positive size.
    request = PlanRequest(gpu=gpu, vram_bytes_per_gpu=None if gpu else GIB, driver=driver, image_cuda=cuda)
    check = driver_check(engine or "", request)
    if check is None:  # pragma: no cover - driver and image CUDA are both given
        return WARN, f"cannot judge driver {driver} for CUDA {cuda}"
    return check.status, check.message


def check_platform(h: HostFacts, b: BundleNeeds | None) -> Check:
    host = f"{h.os}/{h.arch}"
    if b is None:
        ok = h.os == "linux"
        return Check("platform", PASS if ok else FAIL, f"host is {host}",
                     None if ok else "airpack installs on Linux hosts only")
    want = b.platform.split("/")
    if [h.os, h.arch] == want[:2]:
        return Check("platform", PASS, f"host {host} matches the bundle's {b.platform}")
    return Check("platform", FAIL, f"host is {host}, the bundle is built for {b.platform}",
                 f"rebuild the bundle with target.platform: linux/{h.arch}")


def check_docker(h: HostFacts, b: BundleNeeds | None) -> list[Check]:
    if h.docker_version is None:
        return [Check("docker", FAIL, f"no Docker engine answers ({h.docker_error or 'unknown error'})",
                      "start it (systemctl start docker), or point DOCKER_HOST at its socket; "
                      "the user needs access to the socket (the docker group)")]
    out = [Check("docker", PASS, f"Docker Engine {h.docker_version}")]
    if b is not None and b.layer_media_types:
        if bad := unloadable_layers(b.layer_media_types, h.docker_version):
            out.append(Check("image-layers", FAIL, f"Docker {h.docker_version} cannot load {', '.join(bad)} layers",
                             "upgrade Docker Engine to 23 or newer, or rebuild the bundle from gzip images"))
        else:
            out.append(Check("image-layers", PASS, "the engine can load every layer type in the bundle"))
    return out


def check_driver(h: HostFacts, b: BundleNeeds | None) -> Check:
    if b is not None and b.gpus == 0:
        return Check("nvidia-driver", PASS, "not needed: the bundle runs on CPU")
    if not h.nvidia_smi:
        if b is None:
            return Check("nvidia-driver", PASS, "no NVIDIA driver (nvidia-smi): CPU-only bundles can run here")
        return Check("nvidia-driver", FAIL, f"the bundle needs {b.gpus} GPU(s) and nvidia-smi is not installed",
                     "install the NVIDIA driver" + (f" ({bundled_driver(b.cuda)} or newer for the image's "
                                                   f"CUDA {b.cuda})" if b.cuda and bundled_driver(b.cuda) else ""))
    if h.smi_error or not h.gpus:
        return Check("nvidia-driver", FAIL, f"nvidia-smi failed: {h.smi_error or 'no GPU listed'}",
                     "check the driver is loaded (nvidia-smi), reboot after a driver upgrade")
    driver = h.gpus[0].driver
    if b is None or b.cuda is None:
        why = "" if b is None else "; the runtime image's CUDA version is unknown, so it was not compared"
        return Check("nvidia-driver", PASS if b is None else WARN, f"driver {driver}{why}")
    status, why = driver_verdict(driver, b.cuda, engine=b.engine, gpu_name=h.gpus[0].name)
    fix = None if status == PASS else "upgrade the NVIDIA driver, or carry an image built for an older CUDA"
    return Check("nvidia-driver", status, why, fix)


def check_gpus(h: HostFacts, b: BundleNeeds | None) -> Check:
    if b is None:
        return Check("gpus", PASS, f"{len(h.gpus)} NVIDIA GPU(s)" + "".join(
            f"; {g.name} {g.free_bytes / GIB:.1f}/{g.total_mib / 1024:.1f} GiB free" for g in h.gpus))
    if b.gpus == 0:
        return Check("gpus", PASS, "not needed: the bundle runs on CPU")
    if len(h.gpus) < b.gpus:
        return Check("gpus", FAIL, f"the bundle needs {b.gpus} GPU(s), the host has {len(h.gpus)}",
                     "install on a host with enough GPUs, or rebuild the bundle with target.gpus lower")
    if b.per_gpu_bytes is None:
        return Check("gpus", WARN, f"{len(h.gpus)} GPU(s); the bundle has no memory plan to compare with",
                     "lock with a runtime declared so the planner records what each GPU needs")
    best = sorted(h.gpus, key=lambda g: -g.free_bytes)[: b.gpus]
    need = b.per_gpu_bytes / GIB
    short = [g for g in best if g.free_bytes < b.per_gpu_bytes]
    if not short:
        return Check("gpus", PASS, f"{b.gpus} GPU(s) with ≥ {need:.1f} GiB free each")
    g = short[0]
    busy = g.total_mib * 2**20 >= b.per_gpu_bytes
    return Check("gpus", FAIL, f"GPU {g.index} ({g.name}) has {g.free_bytes / GIB:.1f} GiB free, the plan needs "
                 f"{need:.1f} GiB per GPU",
                 "stop what uses the GPU memory (nvidia-smi lists it)" if busy else
                 "use larger GPUs, or rebuild with a smaller quantization or context")


def check_gpu_runtime(h: HostFacts, b: BundleNeeds | None) -> Check:
    have = "nvidia" in h.runtimes or bool(h.cdi_specs)
    where = "the nvidia runtime" if "nvidia" in h.runtimes else f"CDI ({', '.join(h.cdi_specs)})"
    if b is not None and b.gpus == 0:
        return Check("gpu-runtime", PASS, "not needed: the bundle runs on CPU")
    if have:
        return Check("gpu-runtime", PASS, f"containers reach GPUs through {where}")
    if b is None:
        return Check("gpu-runtime", PASS if not h.gpus else WARN, "no NVIDIA container runtime or CDI spec",
                     None if not h.gpus else "install nvidia-container-toolkit to run GPU bundles")
    return Check("gpu-runtime", FAIL, "no NVIDIA container runtime in docker info and no CDI spec",
                 "install nvidia-container-toolkit, then: nvidia-ctk runtime configure --runtime=docker && "
                 "systemctl restart docker (or nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml)")


def check_disk(h: HostFacts, b: BundleNeeds | None) -> list[Check]:
    if h.prefix_free is None:
        return [Check("disk", WARN, f"cannot read the free space at {h.prefix}", "check the prefix exists")]
    if b is None:
        return [Check("disk", PASS, f"{format_size(h.prefix_free)} free at {h.prefix}")]
    out = []
    need = b.model_bytes + 64 * 2**20
    status = PASS if h.prefix_free >= need else FAIL
    out.append(Check("disk", status, f"{format_size(h.prefix_free)} free at {h.prefix}, the weights need "
                     f"{format_size(b.model_bytes)}", None if status == PASS else "free space or choose another --prefix"))
    if h.docker_root_free is not None and b.image_bytes:
        status = PASS if h.docker_root_free >= b.image_bytes * 2 else FAIL
        out.append(Check("engine-disk", status, f"{format_size(h.docker_root_free)} free in {h.docker_root}, "
                         f"the images need about {format_size(2 * b.image_bytes)}",
                         None if status == PASS else "free space in the engine's data root (docker system prune)"))
    return out


def check_memory(h: HostFacts, b: BundleNeeds | None) -> list[Check]:
    if b is None or b.host_bytes is None or h.mem_available is None:
        return []
    ok = h.mem_available >= b.host_bytes
    return [Check("memory", PASS if ok else WARN, f"{h.mem_available / GIB:.1f} GiB RAM available, the plan "
                  f"needs {b.host_bytes / GIB:.1f} GiB", None if ok else "stop other programs or add memory")]


def run_checks(host: HostFacts, needs: BundleNeeds | None) -> DoctorReport:
    """Every check, in a stable order."""
    checks = [check_platform(host, needs), *check_docker(host, needs), check_driver(host, needs),
              check_gpus(host, needs), check_gpu_runtime(host, needs), *check_disk(host, needs),
              *check_memory(host, needs)]
    return DoctorReport(tuple(checks), f"{needs.name} {needs.version}" if needs else None)


def doctor(prefix: Path, manifest: Manifest | None = None, bundle: Path | None = None,
           client: Any = None) -> DoctorReport:
    """Gather this host's facts and check them against ``manifest`` (or the host alone)."""
    needs = bundle_needs(manifest, bundle) if manifest is not None else None
    report = run_checks(gather_host(prefix, client), needs)
    status, detail, fix = python_verdict(host_pythons(), tool_of(manifest.lock) if manifest else None,
                                         manifest is not None)
    return DoctorReport((*report.checks, Check("python", status, detail, fix)), report.bundle)
