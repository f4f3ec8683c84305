"""The one naming rule for the site registry: where ``airpack push`` puts an image and what the Kubernetes
manifests rendered for ``--registry`` name."""

from __future__ import annotations

import pytest

from airpack.errors import SpecError, UsageError
from airpack.oci.reference import site_path, site_reference, split_site_registry
from airpack.render import default_host_params, render_host

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("source", "registry", "want"), [
    ("docker.io/library/busybox", "reg.local:5000", "reg.local:5000/library/busybox"),
    ("busybox:1.36", "reg.local:5000/ai", "reg.local:5000/ai/library/busybox"),
    ("docker.io/vllm/vllm-openai:v0.9", "reg.local/ai/llm", "reg.local/ai/llm/vllm/vllm-openai"),
    ("ghcr.io/ggml-org/llama.cpp:server", "reg.local:5000", "reg.local:5000/ggml-org/llama.cpp"),
    ("ghcr.io/huggingface/text-generation-inference", "reg.local:5000/ai",
     "reg.local:5000/ai/huggingface/text-generation-inference"),
    ("127.0.0.1:5000/team/app:1", "reg.local:5000", "reg.local:5000/team/app"),
    ("localhost:5000/app", "10.0.0.7:5000/mirror", "10.0.0.7:5000/mirror/app"),
    ("registry.example:8443/a/b/c@" + DIGEST, "[fd00::1]:5000/x", "[fd00::1]:5000/x/a/b/c"),
])
def test_site_reference_drops_the_source_host_and_keeps_the_path(source: str, registry: str, want: str) -> None:
    assert site_reference(registry, source, DIGEST) == f"{want}@{DIGEST}"


def test_a_trailing_slash_is_the_same_registry() -> None:
    assert site_reference("reg:5000/ai/", "busybox", DIGEST) == site_reference("reg:5000/ai", "busybox", DIGEST)
    assert split_site_registry("reg:5000/ai/") == ("reg:5000", "ai")
    assert split_site_registry("reg") == ("reg", "")


@pytest.mark.parametrize("bad", ["", "/", "reg local", "reg:5000/AI", "reg:5000/a//b", "reg:x/ai", "-reg/ai",
                                 "reg/-ai"])
def test_a_bad_registry_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="HOST"):
        split_site_registry(bad)


def test_site_path_is_the_repository_without_its_host() -> None:
    assert site_path("docker.io/library/busybox") == "library/busybox"
    assert site_path("ghcr.io/ggml-org/llama.cpp") == "ggml-org/llama.cpp"
    assert site_path("127.0.0.1:5000/t/app") == "t/app"


def test_host_params_take_the_same_registries_as_push() -> None:
    assert default_host_params("m", registry="reg.local:5000/ai").registry == "reg.local:5000/ai"
    assert default_host_params("m", registry="[fd00::1]:5000").registry == "[fd00::1]:5000"
    for bad in ("reg:5000/ai/", "reg:5000/AI", "reg local"):
        with pytest.raises(SpecError, match="registry prefix"):
            default_host_params("m", registry=bad)


@pytest.mark.parametrize("source", ["docker.io/library/busybox", "ghcr.io/ggml-org/llama.cpp",
                                    "127.0.0.1:5000/team/app"])
@pytest.mark.parametrize("registry", ["reg.local:5000", "reg.local:5000/ai/llm"])
def test_the_stage_1_image_and_the_host_registry_render_the_site_reference(source: str, registry: str) -> None:
    """The deploy templates write ``{{ host.registry }}/<site_path>@digest`` (airpack.deploy): the rendered
    reference is the one push writes."""
    template = f'image: "{{{{ host.registry }}}}/{site_path(source)}@{DIGEST}"\n'.encode()
    rendered = render_host({"kubernetes/x.yaml": template}, default_host_params("m", registry=registry))
    assert rendered["kubernetes/x.yaml"].decode() == f'image: "{site_reference(registry, source, DIGEST)}"\n'


def test_kubernetes_refuses_manifests_that_name_an_image_push_does_not_write() -> None:
    from airpack.errors import InstallError
    from airpack.install.targets.kubernetes import check_images

    images = [{"repository": "ghcr.io/ggml-org/llama.cpp", "digest": "sha256:" + "cd" * 32,
               "manifestDigest": DIGEST}]
    good = f'spec:\n  containers:\n  - image: "reg:5000/ai/ggml-org/llama.cpp@{DIGEST}"\n'.encode()
    check_images({"kubernetes/deployment.yaml": good, "ollama/Modelfile": b"FROM x\n"}, "reg:5000/ai", images)
    old = f'spec:\n  initContainers:\n  - image: "reg:5000/ai/ghcr.io/ggml-org/llama.cpp@{DIGEST}"\n'.encode()
    with pytest.raises(InstallError, match="does not push") as info:
        check_images({"kubernetes/deployment.yaml": old}, "reg:5000/ai", images)
    assert "rebuild" in str(info.value.hint)
