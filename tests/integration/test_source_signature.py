"""The publisher's own OpenSSF Model Signing signature (``model.signature`` in the spec), made here by the
publisher's tool itself (``model_signing sign key``), checked at lock against the locked digests, from a local
folder and from a Hub repo (tests/hubserver.py); the bundle carries it in ``model/`` and ``model_signing``
verifies the built bundle with it. A changed file, another key and a file left out are refused at lock."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import HubServer, commit_id, lfs, small

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(["127.0.0.1"])]

MODEL_SIGNING = str(Path(sys.executable).with_name("model_signing"))


def publisher_sign(model: Path, private_key: Path) -> None:
    r = subprocess.run([MODEL_SIGNING, "sign", "key", str(model), "--signature", str(model / "model.sig"),
                        "--private_key", str(private_key)], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def oms_verify(model: Path, signature: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MODEL_SIGNING, "verify", "key", str(model), "--signature", str(signature),
                           "--public_key", str(pub)], capture_output=True, text=True, timeout=120, check=False)


def airpack(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airpack", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, check=False)


def write_spec(folder: Path, model: str, pub: Path, **extra: object) -> Path:
    doc = {"apiVersion": "airpack/v1", "name": "signed", "version": "1.0.0",
           "model": {**json.loads(model), "signature": {"key": str(pub)}, **extra}}
    (folder / "airpack.yaml").write_text(json.dumps(doc))
    return folder / "airpack.yaml"


def test_a_local_source_signature(make_model, keys, tmp_path: Path) -> None:
    model = make_model()
    publisher = keys.ecdsa  # the publisher's key pair; the bundle is signed with another one
    publisher_sign(model, publisher.key)
    spec = write_spec(tmp_path, json.dumps({"path": str(model)}), publisher.pub)
    env = {"AIRPACK_CACHE": str(tmp_path / "cache")}

    r = airpack("lock", spec, "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    [check] = [c for c in json.loads(r.stdout)["data"]["checks"] if c["name"] == "source-signature"]
    assert check["status"] == "pass" and "over 3 files" in check["message"]
    r = airpack("build", spec, "--out", tmp_path / "bundle", "--key", keys.foreign_ecdsa.key, env=env)
    assert r.returncode == 0, r.stderr
    bundle = tmp_path / "bundle"
    ok = oms_verify(bundle / "model", bundle / "model" / "model.sig", publisher.pub)
    assert ok.returncode == 0, ok.stdout + ok.stderr  # the publisher's signature holds for the bundle
    r = airpack("verify", bundle, "--key", keys.foreign_ecdsa.pub)
    assert r.returncode == 0 and "signatures/model.sig: verified (OpenSSF Model Signing, 4 files)" in r.stdout

    # another key, a file left out, a changed file: refused at lock, one line, exit 3 (2 for the spec)
    spec_other = write_spec(tmp_path, json.dumps({"path": str(model)}), keys.foreign_ecdsa.pub)
    r = airpack("lock", spec_other, env=env)
    assert r.returncode == 3 and "signed by another key" in r.stderr and len(r.stderr.splitlines()) == 1
    spec_less = write_spec(tmp_path, json.dumps({"path": str(model)}), publisher.pub, exclude=["tokenizer.json"])
    r = airpack("lock", spec_less, env=env)
    assert r.returncode == 3 and "signed file(s) not there (first: tokenizer.json)" in r.stderr, r.stderr
    spec_nosig = write_spec(tmp_path, json.dumps({"path": str(model)}), publisher.pub, exclude=["model.sig"])
    r = airpack("lock", spec_nosig, env=env)
    assert r.returncode == 2 and "model.signature.file" in r.stderr, r.stderr
    (model / "config.json").write_text('{"hidden_size": 65}')
    spec = write_spec(tmp_path, json.dumps({"path": str(model)}), publisher.pub)
    r = airpack("lock", spec, env=env)
    assert r.returncode == 3 and "another sha256 than signed (first: config.json)" in r.stderr, r.stderr


def test_a_hub_source_signature(keys, make_model, tmp_path: Path) -> None:
    model = make_model()
    publisher_sign(model, keys.ecdsa.key)
    files = [lfs("model.safetensors", (model / "model.safetensors").read_bytes())]
    files += [small(p.name, p.read_bytes()) for p in sorted(model.iterdir()) if p.name != "model.safetensors"]
    bad = [f if f.path != "config.json" else small("config.json", '{"evil": true}') for f in files]
    good_c, bad_c = commit_id("signed-1"), commit_id("signed-2")
    with HubServer() as hub:
        hub.add_repo("acme/signed", {good_c: files, bad_c: bad}, {"main": good_c, "evil": bad_c})
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "AIRPACK_CACHE": str(tmp_path / "cache")}
        spec = write_spec(tmp_path, json.dumps({"repo": "acme/signed"}), keys.ecdsa.pub)
        r = airpack("lock", spec, "--json", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert any(c["name"] == "source-signature" and c["status"] == "pass"
                   for c in json.loads(r.stdout)["data"]["checks"])
        r = airpack("build", spec, "--out", tmp_path / "bundle", "--key", keys.ecdsa.key, env=env)
        assert r.returncode == 0, r.stderr
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        ok = oms_verify(tmp_path / "bundle" / "model", tmp_path / "bundle" / "model" / "model.sig", keys.ecdsa.pub)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        prov = json.loads((tmp_path / "bundle" / "signatures" / "provenance.intoto.jsonl").read_bytes())
        deps = json.loads(base64.b64decode(prov["payload"]))["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert deps[0]["uri"] == f"pkg:huggingface/acme/signed@{good_c}"
        assert deps[0]["digest"] == {"gitCommit": good_c}

        (tmp_path / "airpack.lock").unlink()
        spec = write_spec(tmp_path, json.dumps({"repo": "acme/signed", "revision": "evil"}), keys.ecdsa.pub)
        r = airpack("lock", spec, env=env)
        assert r.returncode == 3 and "(first: config.json)" in r.stderr, r.stderr
