#!/usr/bin/env python3
"""Naming the init-copy weights image offline: airpack against the plain tools, on the same data, in one run.

``airpack render/install --weights init-copy`` must name the weights image by digest without a registry, so it
hashes each model file's tar layer (and checks the file's signed sha256 on the way). Makes a model folder of
random data (default 2 GiB: 8 x 256 MiB shards), then times, warm cache:

  airpack   layer_descriptors (tar layer sha256 + signed sha256, files in parallel threads)
  plain     for f: tar --format=pax -cf - f | sha256sum   (what a script would do; no signed-sum check)
  openssl   openssl dgst -sha256 of the files (one hash per byte, one core, no tar framing)

and prints seconds, GB/s and the ratios.

  python bench/bench_weights_image.py [--gib 2] [--dir /var/tmp/airpack-bench-wi] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airpack.oci.modelpack import ModelFile
from airpack.oci.weights_image import layer_descriptors

MIB = 1024 * 1024


def make_data(model: Path, gib: float) -> list[ModelFile]:
    model.mkdir(parents=True, exist_ok=True)
    shards = 8
    size = int(gib * 1024 * MIB) // shards
    out = []
    for i in range(shards):
        path = model / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        if not (path.exists() and path.stat().st_size == size):
            with path.open("wb") as fh:
                for _ in range(size // (16 * MIB)):
                    fh.write(os.urandom(16 * MIB))
                fh.write(os.urandom(size % (16 * MIB)))
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(4 * MIB):
                digest.update(block)
        out.append(ModelFile(path.name, size, digest.hexdigest()))
    return out


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/airpack-bench-wi"))  # noqa: S108 - a bench folder, named
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    model = args.dir / "model"
    files = make_data(model, args.gib)
    total = sum(f.size for f in files)
    names = " ".join(f.path for f in files)

    def plain() -> None:
        for f in files:
            subprocess.run(f"tar --format=pax -cf - {f.path} | sha256sum", shell=True, cwd=model, check=True,
                           stdout=subprocess.DEVNULL)

    runs = {
        "airpack": lambda: layer_descriptors(files, model),
        "plain": plain,
        "openssl": lambda: subprocess.run(f"openssl dgst -sha256 {names}", shell=True, cwd=model, check=True,
                                          stdout=subprocess.DEVNULL),
    }
    for fn in runs.values():  # warm the page cache once for every contender
        fn()
    best = {name: min(timed(fn) for _ in range(3)) for name, fn in runs.items()}
    print(f"weights image naming, {total / 1e9:.2f} GB in {len(files)} files, warm cache, best of 3, "
          f"{os.cpu_count()} CPUs")
    for name, seconds in best.items():
        print(f"  {name:8s} {seconds:7.2f} s  {total / seconds / 1e9:5.2f} GB/s")
    print(f"  airpack / plain (tar | sha256sum, no signed-sum check): {best['airpack'] / best['plain']:.2f}x time")
    print(f"  airpack / openssl (one hash per byte, no check): {best['airpack'] / best['openssl']:.2f}x time")
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
