#!/usr/bin/env python3
"""Bundle hashing throughput: airpack against the plain tools, on the same data, in one run.

Makes a model folder of random data (default 2.5 GiB: one 2 GiB file, so a single huge file must verify in
parallel, plus 8 x 64 MiB shards), then times, warm cache and cold cache (pages evicted with
posix_fadvise(DONTNEED) before each cold run):

  build   airpack build (copy + hash + sign)         vs  cp -r + sha256sum (what people script today)
  verify  airpack verify                              vs  openssl dgst -sha256 <files>  and  sha256sum -c
  split   airpack split into 2 volumes (warm)         vs  tar cf - | split -b
  join    airpack join (warm)                         vs  cat parts | tar xf - && sha256sum -c

and prints seconds, GB/s, the ratios and each command. Peak RSS of airpack comes from getrusage.
No result is cached: every run hashes every byte.

  python bench/bench_hash.py [--gib 2.5] [--dir /var/tmp/airpack-bench] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MIB = 1024 * 1024


def make_data(root: Path, gib: float) -> list[Path]:
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    total = int(gib * 1024 * MIB)
    shard = 64 * MIB
    files = [(model / f"shard-{i:02d}.safetensors", shard) for i in range(8)]
    files.append((model / "big.gguf", max(total - 8 * shard, shard)))
    for path, size in files:
        if path.exists() and path.stat().st_size == size:
            continue
        with path.open("wb") as fh:
            left = size
            while left:
                n = min(left, 16 * MIB)
                fh.write(os.urandom(n))
                left -= n
    (root / "airpack.yaml").write_text(
        "apiVersion: airpack/v1\nname: bench\nversion: 1.0.0\nmodel:\n  path: model\ntarget:\n  gpus: 0\n")
    return [p for p, _ in files]


def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache (no root needed, unlike /proc/sys/vm/drop_caches)."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


PEAK_RSS: dict[str, int] = {}


def timed(cmd: str, cwd: Path) -> float:
    """Run through exec (no shell left in between), timing it and keeping its own peak RSS (wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(("" if "&&" in cmd else "exec ") + cmd, shell=True, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: command failed ({proc.returncode}): {cmd}")
    PEAK_RSS[cmd] = max(PEAK_RSS.get(cmd, 0), usage.ru_maxrss)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.5)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/var/tmp")) / "airpack-bench")  # noqa: S108 - a bench data folder
    ap.add_argument("--keep", action="store_true", help="keep the data for the next run")
    args = ap.parse_args()
    root: Path = args.dir
    airpack = f"{sys.executable} -m airpack"
    make_data(root, args.gib)
    for d in ("bundle", "copy", "keys", "vols", "joined", "parts", "untar"):
        shutil.rmtree(root / d, ignore_errors=True)
    subprocess.run(f"{airpack} keygen --out keys", shell=True, cwd=root, check=True, capture_output=True)
    size = sum(p.stat().st_size for p in all_files(root / "model"))
    gb = size / 1e9
    rows: list[tuple[str, str, float]] = []

    def run(label: str, cmd: str, cold: bool, files: list[Path] | None = None, cwd: Path = root) -> float:
        if cold:
            evict(files if files is not None else all_files(root / "model"))
        else:
            subprocess.run(f"cat {' '.join(str(p) for p in (files or all_files(root / 'model')))} > /dev/null",
                           shell=True, check=True)
        dt = timed(cmd, cwd)
        rows.append((label + (" (cold)" if cold else " (warm)"), cmd, dt))
        return dt

    # build: each byte read once, hashed while copying
    for cold in (False, True):
        shutil.rmtree(root / "bundle", ignore_errors=True)
        shutil.rmtree(root / "copy", ignore_errors=True)
        run("build  airpack build", f"{airpack} build airpack.yaml --out bundle --key keys/airpack.key", cold)
        run("build  cp -r + sha256sum", "cp -r model copy && (cd copy && sha256sum * > ../copy.sums)", cold)
    bundle = root / "bundle"
    files = all_files(bundle)
    names = " ".join(str(p.relative_to(bundle)) for p in files if p.name not in ("SHA256SUMS", "SHA256SUMS.sig"))
    results: dict[str, dict[bool, float]] = {}
    for cold in (False, True):
        for key, label, cmd in (
            ("airpack", "verify airpack verify", f"{airpack} verify . --key ../keys/airpack.pub"),
            ("openssl", "verify openssl dgst -sha256", f"openssl dgst -sha256 {names}"),
            ("sha256sum", "verify sha256sum --strict -c", "sha256sum --strict -c SHA256SUMS"),
        ):
            results.setdefault(key, {})[cold] = run(label, cmd, cold, files, cwd=bundle)

    # volumes for media smaller than the bundle (warm): airpack split / join (each piece checked against the
    # signature) vs what people script: tar | split -b, then cat | tar x and sha256sum -c on the far side.
    for d in ("vols", "joined", "parts", "untar"):
        shutil.rmtree(root / d, ignore_errors=True)
    (root / "parts").mkdir()
    (root / "untar").mkdir()
    vol_size = f"{int(size / 2 + 64 * MIB)}"
    vols_cmd = f"{airpack} split bundle --key keys/airpack.pub --size {vol_size} --out vols"
    split_cmd = f"tar cf - bundle | split -b {vol_size} - parts/bundle.tar."
    results["split"] = {False: run("split  airpack split (2 volumes)", vols_cmd, False, files)}
    results["tarsplit"] = {False: run("split  tar | split -b", split_cmd, False, files)}
    vol_dirs = " ".join(f"vols/{p.name}" for p in sorted((root / "vols").iterdir()))
    join_cmd = f"{airpack} join {vol_dirs} --key keys/airpack.pub --out joined"
    untar_cmd = "cat parts/bundle.tar.* | tar xf - -C untar && cd untar/bundle && sha256sum --strict -c SHA256SUMS"
    results["join"] = {False: run("join   airpack join", join_cmd, False, all_files(root / "vols"))}
    results["untar"] = {False: run("join   cat | tar x + sha256sum -c", untar_cmd, False,
                                   all_files(root / "parts"))}

    print(f"\ndata: {gb:.2f} GB in {len(files)} files (largest {max(p.stat().st_size for p in files) / 1e9:.2f} GB);"
          f" {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"{'what':<44} {'seconds':>8} {'GB/s':>6}   command")
    for label, cmd, dt in rows:
        print(f"{label:<44} {dt:8.2f} {gb / dt:6.2f}   {cmd if len(cmd) < 90 else cmd[:87] + '...'}")
    for cold in (False, True):
        a = results["airpack"][cold]
        print(f"verify {'cold' if cold else 'warm'}: airpack is {results['openssl'][cold] / a:.2f}x one openssl pass, "
              f"{results['sha256sum'][cold] / a:.2f}x sha256sum -c")
    print(f"split: airpack is {results['split'][False] / results['tarsplit'][False]:.2f}x the time of tar | split "
          f"(and checks every piece); join: {results['join'][False] / results['untar'][False]:.2f}x the time of "
          "cat | tar x + sha256sum -c")
    for cmd, kib in PEAK_RSS.items():
        if "airpack" in cmd and " keygen" not in cmd:
            print(f"peak RSS {kib / 1024:6.0f} MiB  {cmd}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
