#!/usr/bin/env python3
"""Delta updates: what crosses the gap, and how long the far side takes to rebuild the new bundle.

Builds v1 of a model folder of random data (bench_hash's: default 2.5 GiB, 8 x 64 MiB shards and one large file)
and v2 with one 64 MiB shard rewritten (the other files hardlinked, so only the bundles cost disk), both signed.
Then, warm cache:

  carried  airpack split v2 --base v1/SHA256SUMS (one volume)   vs  airpack split v2 (one volume, the full bundle)
  join     airpack join --base v1 (every byte from the base hashed and proved against v2's signature, fsynced)
           vs  cp -r v2 (copying the full bundle: no check, no fsync), cp -r + fsync of each file,
               cp -r + sha256sum -c, and airpack join of the full volume

and prints the bytes on the medium, seconds (best of --repeat runs, each after os.sync()) and the ratios. Correctness is the tests' job (tests/unit/test_delta.py,
tests/integration/test_delta_update.py); here the joined bundle is only compared by size.

  python bench/bench_delta.py [--gib 2.5] [--dir /var/tmp/airpack-bench-delta] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench_hash import MIB, all_files, make_data, timed


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in all_files(folder))


def warm(folder: Path) -> None:
    subprocess.run(["bash", "-c", 'find "$0" -type f -exec cat {} + > /dev/null', str(folder)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.5)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/var/tmp")) / "airpack-bench-delta")  # noqa: S108
    ap.add_argument("--keep", action="store_true", help="keep the data for the next run")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each timed command (the best is kept)")
    args = ap.parse_args()
    root: Path = args.dir
    airpack = f"{sys.executable} -m airpack"
    make_data(root, args.gib)
    for d in ("v1", "v2", "model2", "spec2", "keys", "full", "delta", "joined-full", "joined-delta", "copy"):
        shutil.rmtree(root / d, ignore_errors=True)
    (root / "model2").mkdir()
    for p in (root / "model").iterdir():
        (root / "model2" / p.name).hardlink_to(p)
    changed = root / "model2" / "shard-03.safetensors"
    changed.unlink()
    changed.write_bytes(os.urandom(64 * MIB))
    spec = (root / "airpack.yaml").read_text()
    (root / "spec2").mkdir(exist_ok=True)  # its own folder: the lock is written beside the spec
    (root / "spec2/airpack.yaml").write_text(spec.replace("version: 1.0.0", "version: 2.0.0")
                                             .replace("path: model", "path: ../model2"))
    run = lambda cmd: subprocess.run(cmd, shell=True, cwd=root, check=True, capture_output=True)
    run(f"{airpack} keygen --out keys")
    run(f"{airpack} build airpack.yaml --out v1 --key keys/airpack.key")
    run(f"{airpack} build spec2/airpack.yaml --out v2 --key keys/airpack.key")
    pub = "--key keys/airpack.pub"
    rows: list[tuple[str, float, str]] = []

    def bench(label: str, cmd: str, inputs: list[Path], out: str) -> float:
        """Best of ``--repeat`` runs (this VM is shared: the disk and the cores are busy in bursts)."""
        times = []
        for _ in range(args.repeat):
            shutil.rmtree(root / out, ignore_errors=True)
            os.sync()
            for folder in inputs:
                warm(folder)
            times.append(timed(cmd, root))
        rows.append((label, min(times), cmd))
        return min(times)

    bench("split  full (one volume)", f"{airpack} split v2 {pub} --out full", [root / "v2"], "full")
    bench("split  delta --base v1/SHA256SUMS", f"{airpack} split v2 {pub} --base v1/SHA256SUMS --out delta",
          [root / "v2"], "delta")
    full_vol, delta_vol = (next((root / d).iterdir()) for d in ("full", "delta"))
    t_copy = bench("copy   cp -r v2 (the full bundle, unchecked)", "cp -r v2 copy", [root / "v2"], "copy")
    t_sync = bench("copy   cp -r v2 + fsync each file (as join does)", "cp -r v2 copy && find copy -type f "
                   "-exec sync {} +", [root / "v2"], "copy")
    t_sum = bench("copy   cp -r v2 + sha256sum -c", "cp -r v2 copy && cd copy && sha256sum --strict -c SHA256SUMS",
                  [root / "v2"], "copy")
    t_full = bench("join   full volume", f"{airpack} join full/{full_vol.name} {pub} --out joined-full", [full_vol],
                   "joined-full")
    t_delta = bench("join   delta volume --base v1", f"{airpack} join delta/{delta_vol.name} {pub} --base v1 "
                    "--out joined-delta", [delta_vol, root / "v1"], "joined-delta")
    full_bytes, carried = tree_bytes(full_vol), tree_bytes(delta_vol)
    assert tree_bytes(root / "joined-delta") == tree_bytes(root / "v2") == tree_bytes(root / "joined-full")

    print(f"\nbundle v2: {tree_bytes(root / 'v2') / 1e9:.2f} GB in {len(all_files(root / 'v2'))} files; v2 rewrites "
          f"one 64 MiB shard; {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"on the medium: full volume {full_bytes:,} bytes, delta volume {carried:,} bytes "
          f"({carried / full_bytes:.2%} of the full bundle; {carried - 64 * MIB:,} bytes beyond the changed shard)")
    print(f"{'what':<48} {'seconds':>8}   command")
    for label, dt, cmd in rows:
        print(f"{label:<48} {dt:8.2f}   {cmd if len(cmd) < 90 else cmd[:87] + '...'}")
    print(f"join --base: {t_delta / t_copy:.2f}x the time of cp -r of the full bundle (which checks nothing and "
          f"syncs nothing), {t_delta / t_sync:.2f}x cp -r + fsync, {t_delta / t_sum:.2f}x cp -r + sha256sum -c, "
          f"{t_delta / t_full:.2f}x joining the full volume")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
