"""Volumes packed first fit, largest first (issue 19, item 6): no medium wasted, the smallest --size that works
named when the one given is too small, one unit style and real plurals in what split prints."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.errors import UsageError
from airpack.packing import Item, pack
from airpack.volumes import parse_size

MiB = 2**20


def _total(bins: list) -> list[int]:
    return [sum(c.length for c in b) for b in bins]


def test_first_fit_uses_no_more_media_than_needed() -> None:
    # The demo's shape: a 98 MB GGUF (64 MiB chunks) and 17 MB of image blobs that sort before it, on 70 MB
    # media. In path order the blobs open volume 1, no whole chunk fits beside them, and 3 volumes are used.
    items = [Item("images/blobs/sha256/aa", 17_000_000), Item("model/m.gguf", 98_000_000, 64 * MiB),
             Item("deploy/compose.yaml", 2_000), Item("sbom/bom.cdx.json", 30_000)]
    bins = pack(items, 70_000_000, 100_000)
    assert len(bins) == 2
    assert all(t <= 70_000_000 - 100_000 for t in _total(bins))
    pieces = [(c.path, c.offset, c.length, c.part) for b in bins for c in b if c.path == "model/m.gguf"]
    assert sorted(pieces, key=lambda p: p[1]) == [("model/m.gguf", 0, 64 * MiB, 1),
                                                    ("model/m.gguf", 64 * MiB, 98_000_000 - 64 * MiB, 2)]
    assert sum(_total(bins)) == sum(i.size for i in items)


def test_too_small_names_the_smallest_size_that_works() -> None:
    items = [Item("model/m.gguf", 98_000_000, 64 * MiB), Item("tokenizer.json", 2_000_000)]
    with pytest.raises(UsageError) as exc:
        pack(items, 10_000_000, 100_000)
    msg = str(exc.value)
    assert "model/m.gguf (98.0 MB) does not fit in a volume of 10.0 MB: cut only at its 67.1 MB chunk" in msg
    size = re.search(r"the smallest --size that works is ([\d.]+ [kMG]B)", msg)
    assert size, msg
    works = parse_size(size.group(1))
    assert len(pack(items, works, 100_000)) >= 2  # the size named does work …
    with pytest.raises(UsageError):
        pack(items, 64 * MiB + 100_000 - 1, 100_000)  # … and one byte less of room does not
    with pytest.raises(UsageError, match="raise --max-file"):
        pack(items, 200_000_000, 100_000, max_file=32 * MiB)
    with pytest.raises(UsageError, match="cannot even hold the bundle's signed root"):
        pack(items, 50_000, 100_000)


def test_split_prints_one_unit_style_and_plurals(built_bundle, make_model, keys, tmp_path: Path) -> None:
    model = make_model()
    (model / "extra.safetensors").write_bytes(os.urandom(300_000))
    bundle = built_bundle(model, key=keys.ecdsa, chunk_size=128 * 1024)
    pub = keys.ecdsa.pair.public_path
    run = CliRunner().invoke(app, ["split", str(bundle), "--key", str(pub), "--out", str(tmp_path / "v"),
                                   "--size", "900kB"])
    assert run.exit_code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines and all(re.fullmatch(r"volume \d of \d: \S+ \((1 piece|\d+ pieces), [\d.]+ (B|kB|MB)\)", ln)
                         for ln in lines), lines
    run = CliRunner().invoke(app, ["split", str(bundle), "--key", str(pub), "--out", str(tmp_path / "w"),
                                   "--size", "100kB", "--json"])
    doc = json.loads(run.stdout)
    assert run.exit_code == 2 and "the smallest --size that works is" in doc["error"]
