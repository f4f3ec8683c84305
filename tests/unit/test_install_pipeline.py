"""The lifecycle core against a fake target that records what it is asked to do: install, a failed health
check (undone, exit 4), rollback, an interrupted switch that status reports and the next command undoes, and
removal. The fake is registered by name only: the core has no line for it (a new target needs none).

The bundles are real (built and verified from a small model), given a runtime by hand so that no image has
to be fetched; the fake target copies the real weights and starts nothing. No engine, no sockets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from airpack.errors import AirpackError, HealthError, InstallError
from airpack.install import (
    InstallOptions,
    audit,
    host,
    install,
    lifecycle,
    status,
    targets,
    uninstall,
    versions,
)
from airpack.install.health import SmokeResult
from airpack.install.results import InstallResult, RollbackResult
from airpack.install.targets import common
from airpack.install.targets.base import Done, Plan, Removal
from airpack.install.versions import Pending, Record, Rollback
from airpack.lock import LockedImage
from airpack.progress import Event, Reporter
from airpack.verify import VerifiedBundle, verify_bundle

CONFIG = "sha256:" + "c" * 64
MANIFEST = "sha256:" + "a" * 64


class Fake:
    """A target that runs nothing: it records each call, and ``broken`` versions fail their check."""

    name = "fake"
    local_engine = False
    container_engine = False
    journaled = True
    model_updates = False
    flags: frozenset[str] = frozenset()
    needs_registry = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.broken: set[str] = set()

    def deploy_files(self, signed: Mapping[str, bytes]) -> dict[str, bytes]:
        return {}

    def check_host(self) -> None:
        self.calls.append(("check_host", ""))

    def record_extra(self, plan: Plan) -> dict[str, Any]:
        return {"target": self.name}

    def record_fields(self, active: host.InstallState | None) -> dict[str, Any]:
        return {}

    def again(self, plan: Plan, current: host.InstallState, client: Any, report: Any,
              say: Event) -> InstallResult | None:
        self.calls.append(("again", plan.vid))
        return None

    def clear(self, plan: Plan, client: Any) -> None:
        self.calls.append(("clear", plan.vid))

    def stage(self, plan: Plan, current: host.InstallState | None, client: Any, reporter: Reporter,
              phase: Callable[[str], None]) -> list[str]:
        self.calls.append(("stage", plan.vid))
        versions.stage(plan.prefix, plan.vid, plan.verified, plan.rendered, reporter)
        phase("loading")
        return []

    def start(self, plan: Plan, tags: list[str], key_file: Path | None, client: Any,
              current: host.InstallState | None, say: Event) -> host.InstallState:
        self.calls.append(("start", plan.vid))
        m = plan.verified.manifest
        return host.InstallState(
            name=m.name, version=m.version, digest=plan.verified.sums_sha256,
            key_fingerprint=plan.verified.key_fingerprint, target=self.name, endpoint="http://127.0.0.1:9/v1",
            container_id=f"c-{plan.vid}", container_name=f"fake-{plan.vid}", image_id=plan.image_id, image_tags=(),
            bind="127.0.0.1", port=9, network="host", api_key_file=str(key_file) if key_file else None,
            installed=versions.now(), extra={"versionId": plan.vid})

    def check(self, st: host.InstallState, client: Any, say: Event,
              on_healthy: Callable[[], None] | None = None) -> SmokeResult | None:
        self.calls.append(("check", st.version))
        if st.version in self.broken:
            raise HealthError(f"{st.version} did not become healthy")
        return SmokeResult(True, 200, 0.1, 0.05, 3, 30.0, "red")

    def finish(self, plan: Plan, st: host.InstallState) -> host.InstallState:
        return st

    def audit_fields(self, st: host.InstallState) -> dict[str, Any]:
        return {}

    def result(self, done: Done) -> InstallResult:
        return common.files_result(done.plan, done.state, started=True, new_key=done.new_key,
                                   key_file=done.key_file, smoke=done.smoke.to_dict() if done.smoke else None)

    def last_logs(self, client: Any, st: host.InstallState) -> str:
        return f"{st.container_name}: the engine said no"

    def failed_switch(self, message: str, logs: str, outcome: str) -> tuple[str, str]:
        text = f"{message}; {logs}; {outcome}"
        return text, text

    def restore_outcome(self, record: Record, source: str | None, restored: bool) -> str:
        return common.restore_outcome(record, source, restored)

    def lifecycle_client(self, client: Any) -> Any:
        return client

    def stop(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> None:
        self.calls.append(("stop", vid))

    def resume(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> host.InstallState:
        self.calls.append(("resume", vid))
        versions.point_current(prefix, vid)
        smoke = self.check(st, client, say)
        assert smoke is not None
        return common.record_smoke(prefix, vid, st, smoke)

    def undo_new(self, prefix: Path, record: Record, pending: Pending, client: Any) -> None:
        self.calls.append(("undo_new", pending.target))

    def failure(self, client: Any, st: host.InstallState, exc: AirpackError) -> str:
        return exc.message

    def switches_here(self) -> bool:
        return True

    def rollback_elsewhere(self, prefix: Path, rb: Rollback, say: Event) -> tuple[RollbackResult, dict[str, Any]]:
        raise AssertionError("the fake target switches here")

    def remove(self, prefix: Path, vid: str, st: host.InstallState, client: Any) -> Removal:
        self.calls.append(("remove", vid))
        return Removal(containers=(st.container_id,))

    def remove_all(self, prefix: Path, record: Record | None, states: dict[str, host.InstallState],
                   client: Any) -> Removal:
        self.calls.append(("remove_all", ",".join(states)))
        return Removal(containers=tuple(st.container_id for st in states.values()))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    target = Fake()
    monkeypatch.setitem(targets.TARGETS, target.name, target)
    return target


@pytest.fixture(scope="module")
def verified(built_bundle: Any, make_model: Any, keys: Any) -> VerifiedBundle:
    return verify_bundle(built_bundle(make_model(), key=keys.ecdsa, name="m"), [keys.ecdsa.public])


def version(vb: VerifiedBundle, v: str) -> VerifiedBundle:
    """The bundle as version ``v`` with a vLLM runtime (an image pinned by hand: nothing is fetched)."""
    m = vb.manifest
    image = LockedImage(ref=f"vllm/vllm-openai@{MANIFEST}", repository="vllm/vllm-openai", digest=MANIFEST,
                        config_digest=CONFIG, platform="linux/amd64")
    spec = {**m.spec, "version": v, "runtime": {"engine": "vllm", "image": "vllm/vllm-openai:v1"}}
    entry = {"role": "runtime", "repository": "vllm/vllm-openai", "manifestDigest": MANIFEST,
             "configDigest": CONFIG, "airpackTag": "airpack.local/vllm/vllm-openai:aaaaaaaaaaaa"}
    manifest = dataclasses.replace(m, version=v, spec=spec, lock={**m.lock, "images": [image.to_dict()]},
                                   images=(entry,))
    return dataclasses.replace(vb, manifest=manifest, sums_sha256=f"{v.replace('.', '')}" + "f" * 61)


def vid_of(vb: VerifiedBundle) -> str:
    return versions.version_id(vb.manifest.version, vb.sums_sha256)


def options(prefix: Path, **kw: Any) -> InstallOptions:
    return InstallOptions(prefix=prefix, target="fake", **kw)


def record(prefix: Path) -> dict[str, Any]:
    return dict(json.loads((prefix / host.STATE_FILE).read_text()))


def actions(prefix: Path) -> list[tuple[str, str | None, str]]:
    return [(e["action"], e["version"], e["outcome"]) for e in audit.read(prefix)]


def test_install_stages_starts_checks_and_commits(tmp_path: Path, fake: Fake, verified: VerifiedBundle) -> None:
    prefix = tmp_path / "p"
    v1 = version(verified, "1.0.0")
    said: list[str] = []
    out = install(v1, options(prefix), on_event=said.append)
    vid = vid_of(v1)
    assert fake.calls == [("check_host", ""), ("clear", vid), ("stage", vid), ("start", vid), ("check", "1.0.0")]
    assert (record(prefix)["active"], record(prefix)["pending"], record(prefix)["target"]) == (vid, None, "fake")
    assert (prefix / "current").resolve() == versions.version_dir(prefix, vid).resolve()
    assert (prefix / "model" / "model.safetensors").is_file()  # the real weights, re-hashed as copied
    doc = out.to_dict()
    assert (doc["target"], doc["version"], doc["started"], doc["pruned"]) == ("fake", "1.0.0", True, [])
    assert doc["apiKey"] and out.api_key_file == str(prefix / host.API_KEY_FILE)
    st = versions.read_version(prefix, vid)
    assert st is not None and st.smoke is not None and st.smoke["ok"] and st.smoke["at"]
    assert actions(prefix) == [("verify", "1.0.0", "ok"), ("install", "1.0.0", "ok")]


def test_a_failed_health_check_is_undone_and_exits_4(tmp_path: Path, fake: Fake, verified: VerifiedBundle) -> None:
    prefix = tmp_path / "p"
    v1, v2 = version(verified, "1.0.0"), version(verified, "1.1.0")
    install(v1, options(prefix))
    fake.calls.clear()
    fake.broken.add("1.1.0")
    with pytest.raises(HealthError) as exc:
        install(v2, options(prefix))
    assert exc.value.exit_code == 4
    a, b = vid_of(v1), vid_of(v2)
    assert fake.calls == [("check_host", ""), ("clear", b), ("stage", b), ("stop", a), ("start", b),
                          ("check", "1.1.0"), ("undo_new", b), ("resume", a), ("check", "1.0.0")]
    message = exc.value.message
    assert "1.1.0 did not become healthy" in message and f"fake-{b}: the engine said no" in message
    assert f"the previous version {a} is answering again" in message
    assert (record(prefix)["active"], record(prefix)["pending"]) == (a, None)
    assert not versions.version_dir(prefix, b).exists()
    last = audit.read(prefix)[-1]
    assert (last["action"], last["outcome"]) == ("upgrade", "failed") and "the engine said no" in last["reason"]


def test_upgrade_then_rollback_switches_back(tmp_path: Path, fake: Fake, verified: VerifiedBundle) -> None:
    prefix = tmp_path / "p"
    v1, v2 = version(verified, "1.0.0"), version(verified, "1.1.0")
    install(v1, options(prefix))
    up = install(v2, options(prefix))
    a, b = vid_of(v1), vid_of(v2)
    assert up.to_dict()["version"] == "1.1.0" and (record(prefix)["active"], record(prefix)["previous"]) == (b, a)
    assert actions(prefix)[-1] == ("upgrade", "1.1.0", "ok")
    fake.calls.clear()
    back = lifecycle.rollback(prefix)
    assert fake.calls == [("stop", b), ("resume", a), ("check", "1.0.0")]
    assert (back.version, back.previous_version, back.started) == ("1.0.0", "1.1.0", True)
    assert back.to_dict()["commands"] == [] and back.to_dict()["smoke"]["ok"]
    assert (record(prefix)["active"], record(prefix)["previous"], record(prefix)["pending"]) == (a, b, None)
    fake.broken.add("1.1.0")  # rolling forward to a version that fails now: the active one comes back, exit 4
    with pytest.raises(HealthError, match=r"rollback to 1\.1\.0 failed"):
        lifecycle.rollback(prefix)
    assert record(prefix)["active"] == a and actions(prefix)[-1] == ("rollback", "1.1.0", "failed")


def test_an_interrupted_switch_is_reported_by_status_and_undone_by_the_next_command(
        tmp_path: Path, fake: Fake, verified: VerifiedBundle) -> None:
    prefix = tmp_path / "p"
    v1, v2 = version(verified, "1.0.0"), version(verified, "1.1.0")
    install(v1, options(prefix))
    a, b = vid_of(v1), vid_of(v2)
    # An upgrade killed at "health": the new folder is there, the journal says what was under way.
    (versions.version_dir(prefix, b) / "model").mkdir(parents=True)
    rec = versions.read_record(prefix)
    assert rec is not None
    versions.write_record(prefix, dataclasses.replace(rec, pending=Pending("upgrade", a, b, True, "health", pid=0)))
    before = {p: p.read_bytes() for p in prefix.rglob("*") if p.is_file()}

    report = status(prefix)  # a status read never writes: the unfinished switch is reported, not repaired
    assert report.pending is not None and report.pending.target == b and not report.pending_running
    assert report.to_dict()["pending"]["phase"] == "health" and report.state.version == "1.0.0"
    assert {p: p.read_bytes() for p in prefix.rglob("*") if p.is_file()} == before

    fake.calls.clear()
    done = install(v2, options(prefix))  # the rerun undoes the half-done switch, then performs it
    assert fake.calls[:3] == [("undo_new", b), ("resume", a), ("check", "1.0.0")]
    assert done.to_dict()["version"] == "1.1.0" and record(prefix)["active"] == b
    recover = next(e for e in audit.read(prefix) if e["action"] == "recover")
    assert recover["outcome"] == "ok" and f"undid upgrade to {b} (phase health)" in recover["reason"]


def test_uninstall_of_one_version_and_of_all(tmp_path: Path, fake: Fake, verified: VerifiedBundle) -> None:
    prefix = tmp_path / "p"
    v1, v2 = version(verified, "1.0.0"), version(verified, "1.1.0")
    install(v1, options(prefix))
    install(v2, options(prefix))
    a, b = vid_of(v1), vid_of(v2)
    fake.calls.clear()
    with pytest.raises(InstallError, match="is the active version"):
        uninstall(prefix, version="1.1.0")
    one = uninstall(prefix, version="1.0.0").to_dict()
    assert fake.calls == [("remove", a)] and one["versionsRemoved"] == [a] and one["containersRemoved"] == [f"c-{a}"]
    assert not versions.version_dir(prefix, a).exists() and record(prefix)["previous"] is None
    gone = uninstall(prefix, remove_weights=True).to_dict()
    assert fake.calls[-1] == ("remove_all", b) and gone["versionsRemoved"] == [b] and not gone["weightsKept"]
    assert "target" not in gone and "commandErrors" not in gone
    assert not (prefix / host.STATE_FILE).exists() and not (prefix / "versions").exists()
    assert [(e["action"], e.get("scope")) for e in audit.read(prefix)][-2:] == [("uninstall", "version"),
                                                                               ("uninstall", "all")]


def test_keep_prunes_through_the_target(tmp_path: Path, fake: Fake, verified: VerifiedBundle) -> None:
    prefix = tmp_path / "p"
    bundles = [version(verified, v) for v in ("1.0.0", "1.1.0", "1.2.0")]
    for vb in bundles:
        out = install(vb, options(prefix, keep=2))
    assert out.pruned == (vid_of(bundles[0]),) and ("remove", vid_of(bundles[0])) in fake.calls
    assert list(versions.installed(prefix)) == [vid_of(bundles[1]), vid_of(bundles[2])]


def test_a_prefix_of_another_target_and_a_model_update_are_refused(tmp_path: Path, fake: Fake,
                                                                  verified: VerifiedBundle) -> None:
    prefix = tmp_path / "p"
    install(version(verified, "1.0.0"), options(prefix))
    with pytest.raises(AirpackError, match="with --target fake") as exc:
        install(version(verified, "1.1.0"), InstallOptions(prefix=prefix, target="compose"))
    assert exc.value.exit_code == 2
    with pytest.raises(AirpackError, match=r"model-only bundle .*--target fake does not take one") as exc:
        install(verified, options(prefix))  # the built bundle has no runtime: a model update
    assert exc.value.exit_code == 2 and "--target docker" in (exc.value.hint or "")
