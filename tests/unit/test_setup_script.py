"""scripts/setup.sh waits for another apt/dpkg process instead of failing at once (issue #14 item 16).

The script runs for real in a copy of the repository's scripts; ``apt-get`` and ``dpkg-query`` are stand-ins on
PATH (a test cannot take the machine's real dpkg lock from the other users of this host), and so is the cached
llama.cpp build step. The stand-in ``apt-get`` fails like the real one does when the lock is held, unless it was
told to wait for it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_APT = """#!/bin/sh
echo "$*" >> "$APT_LOG"
case " $* " in
  *" DPkg::Lock::Timeout="[1-9]*) exit 0 ;;
esac
echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2
exit 100
"""


def _tree(tmp: Path) -> Path:
    repo = tmp / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    (repo / "scripts" / "build-llama-server.sh").write_text("echo /opt/llama-server\n")
    (repo / "scripts" / "tool-wheelhouse.sh").write_text("echo /opt/wheels\n")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    stamp = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (repo / ".venv" / f".airpack-setup-{stamp}").touch()
    return repo


def _bin(tmp: Path) -> Path:
    b = tmp / "bin"
    b.mkdir()
    for name, text in (("apt-get", FAKE_APT), ("dpkg-query", "#!/bin/sh\nexit 1\n"), ("sudo", '#!/bin/sh\nexec "$@"\n')):
        (b / name).write_text(text)
        (b / name).chmod(0o755)
    return b


def test_setup_waits_for_the_dpkg_lock_and_says_so(tmp_path: Path) -> None:
    repo, fake = _tree(tmp_path), _bin(tmp_path)
    log = tmp_path / "apt.log"
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "APT_LOG": str(log)}
    out = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], capture_output=True, text=True, env=env,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert [next(w for w in c.split() if w in ("update", "install")) for c in calls] == ["update", "install"]
    assert all("-o DPkg::Lock::Timeout=600" in c for c in calls), calls
    assert "waiting" in out.stderr and "dpkg lock" in out.stderr
