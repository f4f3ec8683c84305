"""No engine gets its API key on its command line (issue #14 item 8): any user on the host reads
``/proc/PID/cmdline``. Each engine is started the way its profile starts it (the same entrypoint, shell wrapper
and arguments), with a stand-in engine program at the image's entrypoint path that reports what it received and
waits; the test then reads the running process's ``/proc/PID/cmdline`` and checks the key is not there, while the
engine did get it (from the environment, from a key file, or in its own in-process argv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from airpack.profiles import PROFILES, get_profile
from airpack.profiles.launch import CustomEngine, Launch, build_invocation

KEY = "ap-SECRET-key-do-not-show-0123456789abcdef"

REPORTER = """
import json, os, sys, time
with open(os.environ["AIRPACK_TEST_REPORT"] + ".tmp", "w") as f:
    json.dump({"argv": sys.argv, "env": dict(os.environ)}, f)
os.rename(os.environ["AIRPACK_TEST_REPORT"] + ".tmp", os.environ["AIRPACK_TEST_REPORT"])
time.sleep(60)
"""


def _fake_engine(tmp: Path) -> tuple[Path, Path]:
    """An executable stand-in engine, and a PYTHONPATH folder holding the same as ``sglang.launch_server``."""
    exe = tmp / "engine"
    exe.write_text(f"#!{sys.executable}\n{REPORTER}")
    exe.chmod(0o755)
    pkg = tmp / "py" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text("if __name__ == '__main__':\n" + "".join(
        f"    {line}\n" for line in REPORTER.strip().splitlines()))
    return exe, tmp / "py"


def _engines() -> list[str]:
    return [e for e, p in PROFILES.items() if p.api_key_supported or e == "custom"]


def _launch(key_file: Path, custom: CustomEngine | None) -> Launch:
    return Launch(served_name="m", listen_host="127.0.0.1", listen_port=8000, tensor_parallel=1,
                  model_file="/models/m.gguf", context_length=512, api_key_file=str(key_file), custom=custom)


@pytest.mark.parametrize("engine", _engines())
def test_the_key_is_never_on_the_engines_command_line(engine: str, tmp_path: Path) -> None:
    exe, pypath = _fake_engine(tmp_path)
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    profile = get_profile(engine)
    custom = None
    if engine == "custom":
        custom = CustomEngine(command=("--port", "{port}"), port=8000, entrypoint=(str(exe),),
                              api_key_file_flag="--api-key-file")
    elif profile.entrypoint and profile.entrypoint[1:2] == ("-m",):
        profile = replace(profile, entrypoint=(sys.executable, *profile.entrypoint[1:]),
                          image_entrypoint=(sys.executable, *profile.image_entrypoint[1:]))
    else:  # the image's own entrypoint (vllm serve, /tgi-entrypoint.sh, /app/llama-server): the stand-in
        profile = replace(profile, image_entrypoint=(str(exe), *profile.image_entrypoint[1:]),
                          entrypoint=(str(exe),) if profile.entrypoint else None)
    inv = build_invocation(profile, _launch(key_file, custom))
    entry = inv.entrypoint or profile.image_entrypoint
    argv = [str(a) for a in (*entry, *inv.args)]
    report = tmp_path / "report.json"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(pypath), "AIRPACK_TEST_REPORT": str(report),
           **{k: str(v) for k, v in inv.env}}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not report.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the stand-in engine never started"
            time.sleep(0.05)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")
        got = json.loads(report.read_text())
    finally:
        proc.kill()
        proc.wait(10)
    assert not any(KEY in a for a in cmdline), f"{engine}: the API key is in /proc/PID/cmdline: {cmdline}"
    # ... and the engine got the key all the same
    received = got["argv"] + list(got["env"].values())
    flag = custom.api_key_file_flag if custom else profile.api_key_file_flag
    if flag:
        path = got["argv"][got["argv"].index(flag) + 1]
        received.append(Path(path).read_text().strip())
    assert KEY in received, f"{engine}: the engine did not receive the key: {got['argv']}"
    if engine == "sglang":  # the flag SGLang reads, in the argv its argparse sees
        assert got["argv"][-2:] == ["--api-key", KEY]
