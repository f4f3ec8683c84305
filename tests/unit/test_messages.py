"""Every fix a message names exists (issue 19, item 9): the flags, ``airpack`` verbs and spec key paths that the
library's error messages, hints and doctor fixes tell the user to use are real."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer
import yaml

import airpack
from airpack.cli import app
from airpack.errors import SpecError
from airpack.spec import parse_spec

ROOT = Path(airpack.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
VERB = re.compile(r"['`]airpack ([a-z]+)\b")  # a command to run, quoted
KEY = re.compile(r"(?<![\w./-])(model|runtime|target|dependencies|kubernetes)\.([a-z][A-Za-z_]*)\b")
BASE = {"apiVersion": "airpack/v1", "name": "m", "version": "1.0.0", "model": {"path": "model"},
        "runtime": {"engine": "llamacpp"}}
# flags of other programs that a message quotes as the program's own (not airpack's)
FOREIGN = {"--merge", "--revision"}  # llama-gguf-split --merge, hf download --revision


def _strings(node: ast.AST) -> list[str]:
    return [sub.value for sub in ast.walk(node) if isinstance(sub, ast.Constant) and isinstance(sub.value, str)]


def _messages() -> list[tuple[str, str]]:
    """(where, text) of every string in a raised error, a ``hint=`` or a ``fix=`` in the library."""
    found: list[tuple[str, str]] = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            parts: list[ast.AST] = []
            if isinstance(node, ast.Raise) and node.exc is not None:
                parts.append(node.exc)
            elif isinstance(node, ast.keyword) and node.arg in ("hint", "fix"):
                parts.append(node.value)
            for part in parts:
                text = "".join(_strings(part))
                found.append((f"{path.relative_to(ROOT.parent)}:{getattr(node, 'lineno', '?')}", text))
    return found


def _cli_flags_and_verbs() -> tuple[set[str], set[str]]:
    group = typer.main.get_command(app)
    flags = {o for p in group.params for o in getattr(p, "opts", [])}
    for cmd in group.commands.values():  # type: ignore[attr-defined]
        flags |= {o for p in cmd.params for o in getattr(p, "opts", []) if o.startswith("--")}
    return flags, set(group.commands)  # type: ignore[attr-defined]


def _key_exists(section: str, key: str) -> bool:
    if section == "kubernetes":
        return False  # no such section in airpack/v1
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc.setdefault(section, {})
    doc[section][key] = "x"
    try:
        parse_spec(doc, Path("/nonexistent"), check_paths=False)
    except SpecError as exc:
        return "unknown key" not in str(exc)
    return True


def test_messages_name_flags_verbs_and_keys_that_exist() -> None:
    flags, verbs = _cli_flags_and_verbs()
    bad = []
    for where, text in _messages():
        bad += [f"{where}: flag {f}" for f in FLAG.findall(text) if f not in flags | FOREIGN]
        bad += [f"{where}: verb {v}" for v in VERB.findall(text) if v not in verbs]
        bad += [f"{where}: key {s}.{k}" for s, k in KEY.findall(text) if not _key_exists(s, k)]
    assert bad == [], "\n".join(bad)


def test_the_scan_sees_a_bad_key_and_a_bad_flag() -> None:
    assert not _key_exists("runtime", "served_name") and _key_exists("runtime", "servedName")
    assert not _key_exists("kubernetes", "weights") and _key_exists("target", "vram")
    flags, verbs = _cli_flags_and_verbs()
    assert "--vram" in flags and "--no-such" not in flags and "plan" in verbs
