"""``airpack render --target helm``: a chart whose templates are the bundle's signed Kubernetes files, linted and
rendered by real Helm code (helm-python-sdk embeds Helm v4; no helm binary), equal to ``render --target
kubernetes`` for the same options, and strictly valid Kubernetes 1.33/1.35 objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from airpack.errors import RefusedError, UsageError
from airpack.install import InstallOptions
from airpack.install.render_files import RenderOptions, render
from airpack.verify import VerifiedBundle
from tests.unit.render_helpers import check_kubernetes, missing
from tests.unit.test_render_cmd import built, verified, with_runtime  # noqa: F401 - fixtures

REGISTRY = "reg.local:5000/ai"
PLACED = {"compose": {}, "kubernetes": {"namespace": "llm", "nodeSelector": {"nvidia.com/gpu.present": "true"},
                                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                         "effect": "NoSchedule"}]}}


def _helm() -> Any:
    try:
        import helm_python
    except ImportError:
        missing("helm-python-sdk")
    return helm_python


@pytest.fixture(scope="module")
def plain(verified: VerifiedBundle,  # noqa: F811 - the fixture
          tmp_path_factory: pytest.TempPathFactory) -> VerifiedBundle:
    return with_runtime(verified, tmp_path_factory.mktemp("helm-plain") / "bundle")


@pytest.fixture(scope="module")
def placed(verified: VerifiedBundle,  # noqa: F811 - the fixture
           tmp_path_factory: pytest.TempPathFactory) -> VerifiedBundle:
    return with_runtime(verified, tmp_path_factory.mktemp("helm-placed") / "bundle", deploy=PLACED,
                        target={"replicas": 3})


def _chart(vb: VerifiedBundle, out: Path, **options: Any) -> Path:
    render(vb, RenderOptions(target="helm", out=out, registry=REGISTRY, **options))
    return out


def _plain(vb: VerifiedBundle, out: Path, **options: Any) -> list[dict[str, Any]]:
    render(vb, RenderOptions(target="kubernetes", out=out, registry=REGISTRY, **options))
    return _docs(p.read_text() for p in sorted((out / "kubernetes").glob("*.yaml")))


def _docs(texts: Any) -> list[dict[str, Any]]:
    docs = [d for text in texts for d in yaml.safe_load_all(text) if d]
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


def _helm_render(chart: Path, values: dict[str, Any] | None = None, namespace: str = "default") -> list[dict[str, Any]]:
    rendered = _helm().Chart.load(str(chart)).render(values or {}, name="release", namespace=namespace)
    return _docs(text for path, text in sorted(rendered.items()) if path.endswith(".yaml"))


def test_the_chart_lints_and_renders_as_the_plain_manifests(plain: VerifiedBundle, tmp_path: Path) -> None:
    chart = _chart(plain, tmp_path / "chart")
    names = sorted(p.relative_to(chart).as_posix() for p in chart.rglob("*") if p.is_file())
    assert {"Chart.yaml", "values.yaml", "values.schema.json", "README.md", "templates/deployment.yaml",
            "templates/service.yaml", "templates/networkpolicy.yaml", "templates/pdb.yaml"} <= set(names)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["name"], meta["version"]) == ("v2", "m", plain.manifest.version)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["model"]["digest"].startswith("sha256:") and "@sha256:" in values["images"]["engine"]
    lint = _helm().lint(str(chart), strict=True)
    assert not [m for m in json.dumps(lint).split('"') if "[ERROR]" in m or "[WARNING]" in m], lint
    docs = _helm_render(chart)
    assert docs == _plain(plain, tmp_path / "plain")
    for doc in docs:
        check_kubernetes(yaml.safe_dump(doc).encode())


@pytest.mark.parametrize(("values", "options"), [
    ({"gpus": 2}, {"gpus": 2}),
    ({"gpus": 0}, {"gpus": 0}),
    ({"weights": {"mode": "host-path"}}, {"weights": "host-path"}),
    ({"apiKey": {"secretName": ""}}, {"api_key": False}),
    ({"port": 9000}, {"port": 9000}),
])
def test_values_give_what_render_gives_for_the_same_options(
        plain: VerifiedBundle, tmp_path: Path, values: dict[str, Any], options: dict[str, Any]) -> None:
    chart = _chart(plain, tmp_path / "chart")
    assert _helm_render(chart, values) == _plain(plain, tmp_path / "plain", **options)


def test_a_placed_bundle_and_replicas_as_values(placed: VerifiedBundle, tmp_path: Path) -> None:
    chart = _chart(placed, tmp_path / "chart")
    docs = _helm_render(chart, namespace="llm")
    assert docs == _plain(placed, tmp_path / "plain")  # 3 replicas, PDB, node selector, tolerations, namespace
    assert {d["kind"] for d in docs} >= {"Deployment", "PodDisruptionBudget"}
    one = _helm_render(chart, {"replicas": 1, "nodeSelector": {"pool": "gpu"}, "tolerations": [],
                               "resources": {"requests": {"cpu": "4", "memory": "16Gi"}}}, namespace="llm")
    assert "PodDisruptionBudget" not in {d["kind"] for d in one}
    (deployment,) = [d for d in one if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    # Helm merges maps from values: a key given null is removed
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "gpu"} and "tolerations" not in pod
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1},
                                                 "requests": {"cpu": "4", "memory": "16Gi"}}
    for doc in one:
        check_kubernetes(yaml.safe_dump(doc).encode())
    with pytest.raises(Exception, match="host-path serve one node"):
        _helm_render(chart, {"weights": {"mode": "host-path"}}, namespace="llm")


@pytest.mark.parametrize(("values", "what"), [
    ({"model": {"digest": "sha256:abc"}}, "digest"),
    ({"replicas": 0}, "replicas"),
    ({"weights": {"mode": "nfs"}}, "mode"),
    ({"weights": {"mode": "init-copy", "imageDigest": ""}}, "imageDigest"),
    ({"gpus": 65}, "gpus"),
    ({"replica": 3}, "replica"),
])
def test_the_schema_makes_helm_refuse_bad_values(plain: VerifiedBundle, tmp_path: Path,
                                                 values: dict[str, Any], what: str) -> None:
    chart = _chart(plain, tmp_path / "chart")
    with pytest.raises(Exception, match=what):
        _helm_render(chart, values)


def test_helm_is_render_only_and_needs_the_registry(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs --registry"):
        RenderOptions(target="helm", out=tmp_path / "o")
    with pytest.raises(UsageError) as refused:
        InstallOptions(prefix=tmp_path / "p", target="helm")
    assert "airpack render --target helm" in str(refused.value.hint)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(RefusedError, match="not empty"):
        RenderOptions(target="helm", out=tmp_path / "used", registry=REGISTRY)


def test_an_ollama_chart_carries_its_modelfile_and_no_key(verified: VerifiedBundle,  # noqa: F811 - the fixture
                                                          tmp_path: Path) -> None:
    ollama = with_runtime(verified, tmp_path / "bundle", engine="ollama")
    chart = _chart(ollama, tmp_path / "chart", api_key=False)
    docs = _helm_render(chart)
    assert docs == _plain(ollama, tmp_path / "plain", api_key=False)
    assert "ConfigMap" in {d["kind"] for d in docs}
    with pytest.raises(Exception, match="cannot require an API key"):  # the bundle's own refusal, translated
        _helm_render(chart, {"apiKey": {"secretName": "ollama-key"}})
