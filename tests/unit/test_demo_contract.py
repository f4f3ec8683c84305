"""The demo's contract with the operator's Docker engine (issue 19, item 12), checked in the script and the README:
an engine already answering is used and left serving the model (the uninstall command printed); a private engine
the demo started is stopped, with the model, when it ends."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "scripts/demo.sh").read_text()


def _function(name: str) -> str:
    m = re.search(rf"^{name}\(\) \{{\n(.*?)^\}}", DEMO, flags=re.DOTALL | re.MULTILINE)
    assert m, name
    return m.group(1)


def test_demo_script_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts/demo.sh")], check=True, timeout=30)


def test_own_engine_is_stopped_and_an_existing_one_keeps_the_model() -> None:
    cleanup = _function("cleanup")
    body = cleanup.split('if [ -n "$started_dockerd" ]; then', 1)
    assert len(body) == 2 and body[0].strip() == "", cleanup  # everything it does is for its own engine only
    assert "airpack uninstall --prefix" in body[1] and 'kill "$started_dockerd"' in body[1]
    assert "trap cleanup EXIT" in DEMO
    tail = DEMO[DEMO.rindex('if [ -z "$started_dockerd" ]'):]
    assert "still being served" in tail and "uninstall --prefix $work/prefix" in tail and "$repo/.venv/bin/airpack" in tail
    assert DEMO.index("docker info >/dev/null") < DEMO.index("dockerd --iptables=false")  # an answering engine first


def test_readme_says_so() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "leaves the model running there" in readme and "airpack uninstall --prefix /tmp/airpack-demo/prefix" in readme
    assert "starts a private `dockerd`" in readme and "stops it, with the model" in readme
