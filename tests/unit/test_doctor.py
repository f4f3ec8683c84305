"""Doctor checks are pure functions of host facts and bundle needs: every verdict, built by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from airpack.bundle_layout import Entry, Manifest
from airpack.install.doctor import FAIL, PASS, WARN, driver_verdict, run_checks
from airpack.install.facts import BundleNeeds, Gpu, HostFacts, bundle_needs, parse_smi
from airpack.plan.gpus import lookup_gpu

GIB = 2**30
CPU_HOST = HostFacts(os="linux", arch="amd64", docker_version="20.10.24+dfsg1", runtimes=("runc",),
                     prefix="/opt/airpack/x", prefix_free=50 * GIB, docker_root="/var/lib/docker",
                     docker_root_free=50 * GIB, mem_available=16 * GIB)
CPU_BUNDLE = BundleNeeds(name="smollm2", version="1.0.0", gpus=0, engine="llamacpp", model_bytes=98_000_000,
                         image_bytes=16_000_000, layer_media_types=("application/vnd.oci.image.layer.v1.tar",))
GPU_BUNDLE = dataclasses.replace(CPU_BUNDLE, gpus=1, cuda="12.8", per_gpu_bytes=20 * GIB)


def gpu_host(driver: str = "570.124.06", used_mib: int = 1000, n: int = 1) -> HostFacts:
    gpus = tuple(Gpu(i, "NVIDIA L40S", driver, 46068, used_mib) for i in range(n))
    return dataclasses.replace(CPU_HOST, nvidia_smi=True, gpus=gpus, runtimes=("nvidia", "runc"))


def verdicts(host: HostFacts, needs: BundleNeeds | None) -> dict[str, str]:
    return {c.name: c.status for c in run_checks(host, needs).checks}


def test_cpu_host_with_cpu_bundle_passes() -> None:
    report = run_checks(CPU_HOST, CPU_BUNDLE)
    assert report.ok, report.to_dict()
    assert set(verdicts(CPU_HOST, CPU_BUNDLE).values()) == {PASS}


def test_host_only_checks_pass_on_a_cpu_host() -> None:
    report = run_checks(CPU_HOST, None)
    assert report.ok and report.bundle is None
    assert "image-layers" not in verdicts(CPU_HOST, None)


def test_gpu_bundle_on_cpu_host_fails_with_fixes() -> None:
    report = run_checks(CPU_HOST, GPU_BUNDLE)
    failed = {c.name: c for c in report.failures}
    assert set(failed) == {"nvidia-driver", "gpus", "gpu-runtime"}
    assert all(c.fix for c in failed.values())
    assert "nvidia-ctk" in (failed["gpu-runtime"].fix or "")


def test_gpu_bundle_on_a_good_gpu_host_passes() -> None:
    assert run_checks(gpu_host(), GPU_BUNDLE).ok


def test_cdi_spec_counts_as_a_gpu_runtime() -> None:
    host = dataclasses.replace(gpu_host(), runtimes=("runc",), cdi_specs=("/etc/cdi/nvidia.yaml",))
    assert verdicts(host, GPU_BUNDLE)["gpu-runtime"] == PASS


@pytest.mark.parametrize(("driver", "cuda", "want"), [
    ("570.124.06", "12.8", PASS),
    ("575.57.08", "12.8", PASS),
    ("550.54.15", "12.8", WARN),   # minor-version compatibility only
    ("525.60.13", "12.4", WARN),
    ("470.82.01", "12.4", FAIL),   # below the CUDA 12 family floor
    ("575.57.08", "13.0", FAIL),   # CUDA 13 needs R580
    ("580.65.06", "13.0", PASS),
    ("550.54.15", "12.4", PASS),
    ("560.35.03", "12.7", PASS),   # no 12.7 in the table: the nearest lower (12.6) decides
])
def test_driver_policy(driver: str, cuda: str, want: str) -> None:
    assert driver_verdict(driver, cuda)[0] == want


def test_vram_in_use_fails_and_says_to_free_it() -> None:
    busy = gpu_host(used_mib=40000)
    check = next(c for c in run_checks(busy, GPU_BUNDLE).checks if c.name == "gpus")
    assert check.status == FAIL and "nvidia-smi" in (check.fix or "")
    small = dataclasses.replace(GPU_BUNDLE, per_gpu_bytes=60 * GIB)
    check = next(c for c in run_checks(gpu_host(), small).checks if c.name == "gpus")
    assert check.status == FAIL and "larger GPUs" in (check.fix or "")


def test_too_few_gpus_fails() -> None:
    assert verdicts(gpu_host(n=1), dataclasses.replace(GPU_BUNDLE, gpus=2))["gpus"] == FAIL
    assert verdicts(gpu_host(n=2), dataclasses.replace(GPU_BUNDLE, gpus=2))["gpus"] == PASS


def test_no_plan_warns() -> None:
    assert verdicts(gpu_host(), dataclasses.replace(GPU_BUNDLE, per_gpu_bytes=None))["gpus"] == WARN


def test_unknown_cuda_warns() -> None:
    assert verdicts(gpu_host(), dataclasses.replace(GPU_BUNDLE, cuda=None))["nvidia-driver"] == WARN


def test_zstd_layers_need_docker_23() -> None:
    zstd = dataclasses.replace(CPU_BUNDLE, layer_media_types=("application/vnd.oci.image.layer.v1.tar+zstd",))
    assert verdicts(CPU_HOST, zstd)["image-layers"] == FAIL
    assert verdicts(dataclasses.replace(CPU_HOST, docker_version="24.0.7"), zstd)["image-layers"] == PASS


def test_wrong_platform_and_no_docker_fail() -> None:
    arm = dataclasses.replace(CPU_HOST, arch="arm64", docker_version=None, docker_error="connection refused")
    got = verdicts(arm, CPU_BUNDLE)
    assert got["platform"] == FAIL and got["docker"] == FAIL
    assert "image-layers" not in got


def test_disk_too_small_fails() -> None:
    tight = dataclasses.replace(CPU_HOST, prefix_free=10_000_000, docker_root_free=1_000_000)
    got = verdicts(tight, CPU_BUNDLE)
    assert got["disk"] == FAIL and got["engine-disk"] == FAIL


def test_parse_smi() -> None:
    gpus = parse_smi("570.124.06, 81559, 1024, NVIDIA H100 80GB HBM3\n570.124.06, 81559 MiB, 0 MiB, NVIDIA H100\n")
    assert [g.total_mib for g in gpus] == [81559, 81559]
    assert gpus[0].free_bytes == (81559 - 1024) * 2**20 and gpus[1].name == "NVIDIA H100"
    with pytest.raises(ValueError, match="unexpected"):
        parse_smi("garbage")


def _manifest(spec: dict[str, object], plan: dict[str, object] | None, config_digest: str) -> Manifest:
    files = (Entry("model/m.gguf", 1000, "0" * 64, "model"), Entry("images/blobs/sha256/x", 500, "1" * 64, "images"))
    images = ({"role": "runtime", "ref": "ghcr.io/ggml-org/llama.cpp:server-cuda", "configDigest": config_digest,
               "layerMediaTypes": ["application/vnd.oci.image.layer.v1.tar+gzip"]},)
    return Manifest(name="m", version="1.0.0", created="", airpack_version="0", spec=spec, lock={}, files=files,
                    images=images, plan=plan)


def test_bundle_needs_reads_plan_and_image_cuda(tmp_path: Path) -> None:
    config = json.dumps({"config": {"Env": ["PATH=/usr/bin", "CUDA_VERSION=12.4.1"]}}).encode()
    import hashlib
    hexd = hashlib.sha256(config).hexdigest()
    blob = tmp_path / "images/blobs/sha256" / hexd
    blob.parent.mkdir(parents=True)
    blob.write_bytes(config)
    spec = {"runtime": {"engine": "llamacpp"}, "target": {"gpus": 2, "platform": "linux/arm64"}}
    plan = {"device": "gpu", "per_gpu": {"required_bytes": 5 * GIB}}
    needs = bundle_needs(_manifest(spec, plan, "sha256:" + hexd), tmp_path)
    assert (needs.gpus, needs.platform, needs.cuda, needs.per_gpu_bytes) == (2, "linux/arm64", "12.4", 5 * GIB)
    assert (needs.model_bytes, needs.image_bytes) == (1000, 500)
    # Without the bundle folder the profile's default image CUDA is used.
    assert bundle_needs(_manifest(spec, None, "sha256:" + hexd)).cuda == "12.8"
    cpu = bundle_needs(_manifest({"runtime": {"engine": "llamacpp"}, "target": {"gpus": 0}},
                                 {"device": "host", "required_bytes": 3 * GIB}, "sha256:" + hexd))
    assert (cpu.gpus, cpu.cuda, cpu.host_bytes) == (0, None, 3 * GIB)


def test_doctor_judges_the_driver_as_the_planner_does_for_the_gpu_it_finds() -> None:
    """Below the driver the image's CUDA ships with: a datacenter GPU may run (forward compatibility, warn),
    a consumer GPU may not (fail): the verdicts `airpack lock` gives for those GPUs."""
    old = "550.54.15"  # CUDA 12.8 ships with 570.86
    datacenter = gpu_host(driver=old)
    consumer = dataclasses.replace(datacenter, gpus=tuple(dataclasses.replace(g, name="NVIDIA GeForce RTX 4090")
                                                        for g in datacenter.gpus))
    assert verdicts(datacenter, GPU_BUNDLE)["nvidia-driver"] == WARN
    check = next(c for c in run_checks(consumer, GPU_BUNDLE).checks if c.name == "nvidia-driver")
    assert check.status == FAIL and "not a datacenter GPU" in check.detail


@pytest.mark.parametrize(("smi_name", "known"), [
    ("NVIDIA H100 80GB HBM3", "H100-80GB"), ("NVIDIA A100 80GB PCIe", "A100-80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100-40GB"), ("NVIDIA H200 NVL", "H200"), ("Tesla T4", "T4"),
    ("NVIDIA RTX 6000 Ada Generation", "RTX-6000-ADA"), ("Tesla V100-SXM2-32GB", "V100-32GB"),
])
def test_gpu_names_as_nvidia_smi_reports_them_are_known(smi_name: str, known: str) -> None:
    assert lookup_gpu(smi_name).name == known
