"""Benchmark: airpack image fetch/load against docker save/load and skopeo copy (loads: best of two, alternated).

The same image (one 1 GiB layer of random bytes, uncompressed tar so no tool spends time in gzip) sits in
a distribution registry on 127.0.0.1 and, after a ``docker pull``, in a private dockerd. Timed:

  fetch   airpack fetch_image (cold cache) → OCI layout
          docker save -o <tar> <image>                      (image already in the engine)
          skopeo copy --src-tls-verify=false docker://… oci:<dir>:<ref>
  load    airpack load_into_engine (layout → streamed docker-archive → /images/load)
          docker load -i <tar>                              (the image removed from the engine before each)

Goals: fetch ≤ 0.15x docker save and ≤ 0.5x skopeo; load no slower than docker load. Every step starts
after ``sync`` (no writeback of an earlier step's GiB competes with it), each load from a cold input (pages
evicted); fetches run ``--rounds`` times, loads three times after an untimed warm-up (the order swapped
each time), and each tool's best time counts, which keeps a noisy shared machine from deciding a ratio.

    .venv/bin/python bench/bench_images.py [--size-mib 1024] [--workdir DIR] [--rounds 3]

``--workdir /dev/shm`` puts the registry, the engine and every output in memory: what is left is each tool's
own work. On this VM's disk every tool that writes the GiB waits on the disk (and on the discards of files
deleted just before, ext4 mounts it with ``discard``), which spreads one tool's time over 2-3x between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airpack.oci import resolve_image
from airpack.oci.engine import airpack_tag
from airpack.oci.engine_load import load_into_engine
from airpack.oci.fetch import fetch_image
from bench.bench_hash import evict
from tests.dockerenv import push_blob, push_manifest, start_engine, start_registry

BLOCK = 1024 * 1024


def make_layer(path: Path, size_mib: int) -> tuple[str, int]:
    """An uncompressed layer tar holding one file of random bytes; returns (digest, size)."""
    h = hashlib.sha256()

    class Hashing(io.RawIOBase):
        def __init__(self, fh: io.BufferedWriter) -> None:
            self.fh = fh

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            h.update(b)
            return self.fh.write(b)

    class Random(io.RawIOBase):
        def __init__(self, n: int) -> None:
            self.left = n

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            take = min(self.left, BLOCK if n < 0 else n)
            self.left -= take
            return os.urandom(take)

    with path.open("wb") as raw, tarfile.open(fileobj=Hashing(raw), mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("data/random.bin")
        info.size, info.mtime, info.mode = size_mib * BLOCK, 0, 0o644
        tar.addfile(info, Random(info.size))
    return "sha256:" + h.hexdigest(), path.stat().st_size


def upload_file(base: str, repo: str, path: Path, digest: str) -> None:
    import requests

    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    loc = r.headers["Location"]
    loc = loc if "://" in loc else base + loc
    with path.open("rb") as fh:
        r = requests.put(loc, params={"digest": digest}, data=fh, timeout=600,
                         headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


def timed(label: str, cmd: str, fn) -> float:  # type: ignore[no-untyped-def]
    subprocess.run(["sync"], check=False)
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    print(f"  {label:<16} {dt:7.2f} s   {cmd}", flush=True)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the registry, the engine and every output live (/dev/shm: no disk in the way)")
    ap.add_argument("--rounds", type=int, default=3, help="fetch rounds; each tool's best counts")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="airpack-bench-", dir=args.workdir))
    engine = registry = None
    try:
        registry = start_registry(work, "registry")
        engine = start_engine(work)
        client = engine.client
        env = engine.env()
        print(f"setup: {args.size_mib} MiB random layer, registry {registry.host}, engine {engine.host}")
        layer_digest, layer_size = make_layer(work / "layer.tar", args.size_mib)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/data"]},
                             "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": layer_size}]}).encode()
        upload_file(registry.url, "bench/big", work / "layer.tar", layer_digest)
        (work / "layer.tar").unlink()
        push_blob(registry.url, "bench/big", config)
        push_manifest(registry.url, "bench/big", "1", manifest, "application/vnd.oci.image.manifest.v1+json")
        ref = f"{registry.host}/bench/big:1"
        subprocess.run(["docker", "pull", "-q", ref], env=env, check=True, capture_output=True)

        print(f"fetch (registry → local files), best of {args.rounds} alternated rounds, fresh outputs each:")
        locked = resolve_image(ref, "linux/amd64")
        layout, save_tar, sk_dir = work / "layout", work / "saved.tar", work / "skopeo-oci"
        sk_cmd = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{sk_dir}:big"]
        t_ap = t_save = t_sk = float("inf")
        for _ in range(args.rounds):
            for path in (layout, work / "cache", save_tar, sk_dir):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            # fetch_image returns every blob's whole-file digest and chunk chain, all a build needs for SHA256SUMS.
            t_ap = min(t_ap, timed("airpack fetch", f"fetch_image({ref}) -> {layout}",
                                   lambda: fetch_image(locked, layout, cache_dir=work / "cache")))
            t_save = min(t_save, timed("docker save", f"docker save -o {save_tar} {ref}", lambda: subprocess.run(
                ["docker", "save", "-o", str(save_tar), ref], env=env, check=True)))
            t_sk = min(t_sk, timed("skopeo copy", " ".join(sk_cmd), lambda: subprocess.run(sk_cmd, check=True)))

        print("load (local files → engine):")

        def clean() -> None:
            for r in (ref, airpack_tag(locked), locked.config_digest):
                subprocess.run(["docker", "rmi", "-f", r], env=env, capture_output=True, check=False)

        # Alternate the two, twice each, the order swapped in the second round, and keep each one's best: the
        # first load after a fetch pays for page-cache and writeback state the other did not (measured 7.3 s
        # then 2.5 s for the same 512 MiB).
        # Both loads read their input cold (evict): the layout was written before the tar, and this VM reclaims
        # page cache on its own (DAMON), so 'warm' would favour whichever file was written last.
        def ap_load() -> float:
            clean()
            evict([p for p in layout.rglob("*") if p.is_file()])
            t = timed("airpack load", f"load_into_engine({layout})", lambda: load_into_engine(layout, [locked], client))
            assert client.api.inspect_image(ref)["Id"] == locked.config_digest
            return t

        def docker_load() -> float:
            clean()
            evict([save_tar])
            return timed("docker load", f"docker load -q -i {save_tar}", lambda: subprocess.run(
                ["docker", "load", "-q", "-i", str(save_tar)], env=env, check=True, capture_output=True))

        # One untimed load first: the engine's first load after it started pays a one-time cost (measured
        # 24.6 s, then 10.3-12.6 s for the same GiB), which would otherwise land on whichever tool goes first.
        clean()
        subprocess.run(["docker", "load", "-q", "-i", str(save_tar)], env=env, check=True, capture_output=True)
        t_apl = t_dl = float("inf")
        for turn in range(3):
            if turn % 2 == 0:
                t_apl = min(t_apl, ap_load())
                t_dl = min(t_dl, docker_load())
            else:
                t_dl = min(t_dl, docker_load())
                t_apl = min(t_apl, ap_load())
        print("ratios:")
        print(f"  airpack fetch / docker save = {t_ap / t_save:.3f}  (goal ≤ 0.15)")
        print(f"  airpack fetch / skopeo copy = {t_ap / t_sk:.3f}  (goal ≤ 0.5)")
        print(f"  airpack load  / docker load = {t_apl / t_dl:.3f}  (goal ≤ 1.0)")
    finally:
        if engine:
            engine.stop()
        if registry:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
