"""Locking a Hub repo against a local Hub: pinning, metadata-only weights, blob ids, errors, the token."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from hubserver import TINY_C1, TINY_C2, TOKEN, HubServer, tiny_files

from airpack.errors import EXIT_USAGE, FetchError, SourceError
from airpack.sources import fetch_hub, resolve_hub
from airpack.spec import ModelSpec

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(["127.0.0.1"])]

TINY_SELECTED = {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json", "README.md",
                 "extra/notes.txt"}


def test_lock_pins_branch_to_commit_and_every_sha256(hub: HubServer, tmp_path: Path) -> None:
    locked = resolve_hub(ModelSpec(repo="acme/tiny", revision="main"), endpoint=hub.url)

    assert locked.source == "hub" and locked.revision == "main" and locked.commit == TINY_C1
    truth = {f.path: f for f in tiny_files(1)}
    assert {f.path for f in locked.files} == TINY_SELECTED
    for f in locked.files:
        assert (f.size, f.sha256) == (truth[f.path].size, truth[f.path].sha256), f.path
        # small files carry the git blob id they were checked against; LFS files do not need one
        assert f.blob_id == (None if truth[f.path].lfs else truth[f.path].blob_id), f.path
    reasons = {e.path: e.reason for e in locked.excluded}
    assert "allowPickle" in reasons["pytorch_model.bin"] and "allowCode" in reasons["modeling_tiny.py"]
    assert ".gitattributes" not in {f.path for f in locked.files}
    # weights are not downloaded at lock time: their sha256 comes from the listing
    assert hub.logged(server="cdn") == []
    assert not any(r.path.endswith("/model.safetensors") for r in hub.logged(method="GET"))

    # main moves on; the lock still fetches the locked commit's bytes, by commit sha
    hub.move_ref("acme/tiny", "main", TINY_C2)
    hub.clear_log()
    digests = fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert (tmp_path / "out" / "config.json").read_bytes() == truth["config.json"].data
    assert digests["model.safetensors"].sha256 == truth["model.safetensors"].sha256
    resolves = [r.path for r in hub.logged(server="hub") if "/resolve/" in r.path]
    assert resolves and all(f"/resolve/{TINY_C1}/" in p for p in resolves)


@pytest.mark.parametrize("revision", ["v1.0", TINY_C1])
def test_lock_by_tag_or_commit(hub: HubServer, revision: str) -> None:
    locked = resolve_hub(ModelSpec(repo="acme/tiny", revision=revision, files=("*.json",)), endpoint=hub.url)
    assert locked.commit == TINY_C1 and locked.revision == revision


def test_tree_pages_are_followed(hub: HubServer) -> None:
    hub.state.page_size = 3
    locked = resolve_hub(ModelSpec(repo="acme/tiny", files=("*.json", "*.safetensors")), endpoint=hub.url)
    assert {f.path for f in locked.files} == {"config.json", "generation_config.json", "tokenizer.json",
                                              "tokenizer_config.json", "special_tokens_map.json",
                                              "model.safetensors"}


def test_lying_blob_id_is_refused_at_lock(hub: HubServer) -> None:
    hub.lie_blob_id("acme/tiny", "tokenizer_config.json")
    with pytest.raises(FetchError, match=r"tokenizer_config\.json: the bytes served do not match the git blob id"):
        resolve_hub(ModelSpec(repo="acme/tiny"), endpoint=hub.url)


@pytest.mark.parametrize(
    ("spec", "token", "message"),
    [
        (ModelSpec(repo="acme/nope"), None, r"model\.repo: acme/nope does not exist on the Hub, or is private"),
        (ModelSpec(repo="acme/tiny", revision="dev"), None, r"model\.revision: 'dev' is not a branch, tag or commit"),
        (ModelSpec(repo="acme/gated"), None, r"model\.repo: acme/gated is gated"),
        (ModelSpec(repo="acme/gated"), "hf_wrongToken", r"model\.repo: acme/gated is gated"),
        (ModelSpec(repo="acme/gated", files=("*.safetensors",)), None, r"acme/gated is gated"),
    ],
    ids=["missing-repo", "missing-revision", "gated-no-token", "gated-wrong-token", "gated-lfs-only"],
)
def test_source_errors_are_one_clear_line(hub: HubServer, spec: ModelSpec, token: str | None, message: str) -> None:
    with pytest.raises(SourceError, match=message) as info:
        resolve_hub(spec, endpoint=hub.url, token=token)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)


def test_vanished_file_is_a_source_error(hub: HubServer, tmp_path: Path) -> None:
    locked = resolve_hub(ModelSpec(repo="acme/tiny", files=("*.json",)), endpoint=hub.url)
    hub.vanish("acme/tiny", "generation_config.json")
    with pytest.raises(SourceError, match=r"generation_config\.json: the file is no longer in the repo"):
        fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    with pytest.raises(SourceError, match=r"generation_config\.json: the file is no longer in the repo"):
        resolve_hub(ModelSpec(repo="acme/tiny", files=("*.json",)), endpoint=hub.url)


def test_token_from_env_is_used_but_never_written(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    locked = resolve_hub(ModelSpec(repo="acme/gated"), endpoint=hub.url)
    digests = fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")

    assert set(digests) == TINY_SELECTED
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.logged(server="hub"))
    # the CDN is another origin: the token must not follow the redirect there
    assert hub.logged(server="cdn") and all(r.authorization is None for r in hub.logged(server="cdn"))
    text = json.dumps(locked.to_dict()) + caplog.text + "".join(capsys.readouterr())
    assert TOKEN not in text and TOKEN[:12] not in text
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_small_files_match_their_bytes(hub: HubServer) -> None:
    locked = resolve_hub(ModelSpec(repo="acme/tiny", files=("config.json",)), endpoint=hub.url)
    (f,) = locked.files
    data = {t.path: t for t in tiny_files(1)}["config.json"].data
    assert data is not None
    assert f.sha256 == hashlib.sha256(data).hexdigest() and f.size == len(data)
