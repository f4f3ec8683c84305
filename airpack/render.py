"""Render deployment files in two stages: build-time from the lock, install-time from host parameters.

Stage 1 (``airpack build``) renders ``templates/`` with a :class:`DeployContext` into the bundle's ``deploy/``
directory. Template syntax for stage 1 is ``[[ expr ]]`` / ``[% stmt %]``, so the ``{{ host.* }}`` and
``{% if host.* %}`` parts pass through untouched: the signed deploy files are templates over host parameters only.
Stage 2 (``airpack install``) renders those files with a :class:`HostParams`. Both stages run in a Jinja sandbox
with ``StrictUndefined``; values from the spec are quoted for the file format and cannot open a stage-2 tag.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jinja2
import yaml
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from airpack.errors import BuildError, SpecError, UsageError
from airpack.oci.reference import split_site_registry
from airpack.profiles import view
from airpack.profiles.context import DeployContext
from airpack.spec import DEPLOY_FORMATS
from airpack.spec_kubernetes import DEFAULT_WEIGHTS, WEIGHTS_MODES

HOST_PARAMS = ("prefix", "port", "bind", "gpus", "registry", "api_key_file", "network", "weights", "model_digest",
               "weights_digest")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+@=-]*$")


def templates_dir() -> Path:
    """Where the templates are: ``airpack/templates`` when installed, ``<checkout>/templates`` in a source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "compose.yaml.j2").is_file():
            return candidate
    raise BuildError("deploy templates not found", hint=f"looked in {here / 'templates'} and {here.parent}")


@dataclass(frozen=True)
class HostParams:
    """What only the target host knows. Checked when built, so stage 2 can paste the values verbatim."""

    prefix: str
    port: int
    bind: str = "127.0.0.1"
    gpus: int = 0
    registry: str | None = None  # internal registry prefix for Kubernetes images
    api_key_file: str | None = None  # host file holding the API key (Kubernetes: put it in a Secret)
    network: str = "bridge"  # "host": the engine binds bind:port itself (Compose/systemd)
    # Kubernetes: how the pods get the weights (airpack.spec_kubernetes.WEIGHTS_MODES), and the digests of what
    # 'airpack push' put beside the images: the model artifact (image-volume), the weights image (init-copy).
    weights: str = DEFAULT_WEIGHTS
    model_digest: str | None = None
    weights_digest: str | None = None

    def __post_init__(self) -> None:
        for key in ("prefix", "api_key_file"):
            value = getattr(self, key)
            if value is not None and (not _SAFE_PATH.match(value) or "/../" in f"{value}/"):
                raise SpecError(f"host.{key}: {value!r} is not an absolute path of portable characters")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise SpecError(f"host.port: {self.port!r} is not a port number (1-65535)")
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or not 0 <= self.gpus <= 64:
            raise SpecError(f"host.gpus: {self.gpus!r} is not a GPU count (0-64)")
        try:
            ipaddress.ip_address(self.bind)
        except ValueError:
            raise SpecError(f"host.bind: {self.bind!r} is not an IP address") from None
        if "%" in self.bind:
            raise SpecError(f"host.bind: {self.bind!r}: scoped IPv6 addresses are not supported")
        if self.registry is not None and not _site_registry(self.registry):
            raise SpecError(
                f"host.registry: {self.registry!r} is not a registry prefix like reg.local:5000/ai"
            )
        if self.network not in ("bridge", "host"):
            raise SpecError(f"host.network: {self.network!r} is not 'bridge' or 'host'")
        if self.weights not in WEIGHTS_MODES:
            raise SpecError(f"host.weights: {self.weights!r} is not one of {', '.join(WEIGHTS_MODES)}")
        for key in ("model_digest", "weights_digest"):
            if (value := getattr(self, key)) is not None and not _DIGEST.match(value):
                raise SpecError(f"host.{key}: {value!r} is not a sha256:<hex> digest")


def _site_registry(registry: str) -> bool:
    """``HOST[:PORT][/PREFIX]`` by the one naming rule (``airpack.oci.reference``), pasted as is: no slash
    at either end."""
    try:
        split_site_registry(registry)
    except UsageError:
        return False
    return registry == registry.strip("/")


def default_host_params(name: str, *, gpus: int = 0, port: int = 8000, **overrides: Any) -> HostParams:
    """The host parameters ``airpack install`` uses when the operator gives none."""
    return HostParams(**{"prefix": f"/opt/airpack/{name}", "port": port, "gpus": gpus, **overrides})


# ---- stage 1 --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _stage1_env(templates: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(view.FILTERS)
    return env


def _outputs(ctx: DeployContext, targets: Iterable[str]) -> dict[str, str]:
    """Output path under ``deploy/`` → template name."""
    chosen = set(targets)
    if unknown := chosen - set(DEPLOY_FORMATS):
        raise SpecError(f"unknown deploy target(s) {sorted(unknown)}", hint=f"use {', '.join(DEPLOY_FORMATS)}")
    out: dict[str, str] = {}
    if "compose" in chosen:
        out["compose.yaml"] = "compose.yaml.j2"
    if "kubernetes" in chosen:
        for kind in ("deployment", "service", "networkpolicy"):
            out[f"kubernetes/{kind}.yaml"] = f"kubernetes/{kind}.yaml.j2"
        if ctx.kubernetes.storage_class:  # written only when the host chooses init-copy
            out["kubernetes/pvc.yaml"] = "kubernetes/pvc.yaml.j2"
        if ctx.replicas > 1:
            out["kubernetes/pdb.yaml"] = "kubernetes/pdb.yaml.j2"
        if ctx.profile.ollama_import:
            out["kubernetes/ollama-modelfile.yaml"] = "kubernetes/ollama-modelfile.yaml.j2"
    if "systemd" in chosen:
        out[f"systemd/airpack-{ctx.slug}.container"] = "systemd/quadlet.container.j2"
        out[f"systemd/airpack-{ctx.slug}.service"] = "systemd/docker.service.j2"
    if ctx.profile.ollama_import and chosen:
        out["ollama/Modelfile"] = "ollama/Modelfile.j2"
    return out


def render_bundle_deploy(
    ctx: DeployContext, targets: Iterable[str], *, templates: Path | None = None
) -> dict[str, bytes]:
    """Stage 1: the bundle's ``deploy/`` files (path → bytes, sorted), templates over ``host.*`` only."""
    env = _stage1_env(templates or templates_dir())
    variables = view.build(ctx)
    variables["modelfile_text"] = ""
    if ctx.profile.ollama_import:
        variables["modelfile_text"] = _render1(env, "ollama/Modelfile.j2", variables)
    files: dict[str, bytes] = {}
    for rel, name in sorted(_outputs(ctx, targets).items()):
        text = _render1(env, name, variables)
        _check_stage2(rel, text)
        files[rel] = text.encode("utf-8")
    _trial_render(ctx, files)
    return files


def _render1(env: SandboxedEnvironment, name: str, variables: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(variables)
    except jinja2.TemplateError as exc:
        raise BuildError(f"rendering template {name} failed: {exc}") from exc


def _trial_render(ctx: DeployContext, files: Mapping[str, bytes]) -> None:
    """Render once for typical hosts (and every weights mode this bundle allows) so a template bug fails the
    build, not the install."""
    trials = [(gpus, DEFAULT_WEIGHTS) for gpus in sorted({0, ctx.gpus, 2})]
    trials += [(ctx.gpus, mode) for mode in WEIGHTS_MODES if mode != DEFAULT_WEIGHTS]
    for gpus, mode in trials:
        host = default_host_params(ctx.slug, gpus=gpus, registry="registry.invalid", weights=mode,
                                   model_digest=TRIAL_DIGEST, weights_digest=TRIAL_DIGEST)
        try:
            rendered = render_host(files, host)
        except SpecError:
            if mode == DEFAULT_WEIGHTS:
                raise
            continue  # a mode this bundle refuses (host-path with replicas, init-copy without a shell)
        for rel, data in rendered.items():
            if rel.endswith(".yaml"):
                try:
                    list(yaml.safe_load_all(data))
                except yaml.YAMLError as exc:
                    raise BuildError(f"deploy/{rel} is not valid YAML for gpus={gpus}: {exc}") from exc


# ---- stage 2 --------------------------------------------------------------------------------------------


class _HostRefused(Exception):
    """Raised by ``fail()`` in a deploy file: the host asks for something this bundle cannot do."""


def _fail(message: str) -> NoReturn:
    raise _HostRefused(message)


_STAGE2 = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_STAGE2.globals = {"fail": _fail, "range": range}
_STAGE2_NAMES = {"host", "fail", "range"}
_OPTIONAL = {"api_key_file", "model_digest", "weights_digest"}  # "is defined", or where a weights mode needs it
TRIAL_DIGEST = "sha256:" + "0" * 64


@functools.lru_cache(maxsize=256)
def _compile2(source: str) -> jinja2.Template:
    return _STAGE2.from_string(source)


@functools.lru_cache(maxsize=256)
def _host_attrs(rel: str, source: str) -> frozenset[str]:
    """The ``host.*`` names a deploy file uses; BuildError when it uses anything else."""
    try:
        ast = _STAGE2.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise BuildError(f"deploy/{rel}: line {exc.lineno}: {exc.message}") from exc
    if extra := meta.find_undeclared_variables(ast) - _STAGE2_NAMES:
        raise BuildError(f"deploy/{rel}: uses {sorted(extra)}; only host parameters may be left for install")
    attrs = [
        n for n in ast.find_all(nodes.Getattr) if isinstance(n.node, nodes.Name) and n.node.name == "host"
    ]
    bare = [n for n in ast.find_all(nodes.Name) if n.name == "host"]
    if len(bare) != len(attrs):
        raise BuildError(f"deploy/{rel}: 'host' must be used as host.<parameter>")
    used = {n.attr for n in attrs}
    if unknown := used - set(HOST_PARAMS):
        raise BuildError(
            f"deploy/{rel}: unknown host parameter(s) {sorted(unknown)}",
            hint=f"declared: {', '.join(HOST_PARAMS)}; was the bundle built by a newer airpack?",
        )
    return frozenset(used)


def stage2_ast(rel: str, source: str) -> nodes.Template:
    """A deploy file's stage-2 syntax tree (for ``render --target helm``), its host parameters checked."""
    _host_attrs(rel, source)
    return _STAGE2.parse(source)


def _check_stage2(rel: str, source: str) -> None:
    _host_attrs(rel, source)


def render_host(files: Mapping[str, bytes], host: HostParams) -> dict[str, bytes]:
    """Stage 2: substitute the host parameters into the bundle's deploy files (path → bytes, sorted)."""
    values = {k: v for k, v in dataclasses.asdict(host).items() if v is not None}
    out: dict[str, bytes] = {}
    for rel in sorted(files):
        try:
            source = files[rel].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BuildError(f"deploy/{rel} is not UTF-8 text") from exc
        used = _host_attrs(rel, source)
        try:
            text = _compile2(source).render(host=values)
        except _HostRefused as exc:
            raise SpecError(f"deploy/{rel}: {exc}") from None
        except jinja2.UndefinedError:
            missing = sorted(used - set(values) - _OPTIONAL) or sorted(used - set(values))
            raise SpecError(f"deploy/{rel} needs host parameter(s) {missing}") from None
        except jinja2.TemplateError as exc:
            raise BuildError(f"deploy/{rel}: {exc}") from exc
        if rel.endswith(".yaml") and not _has_content(text):
            continue  # an object only some hosts get (the init-copy claim): not written for this one
        out[rel] = text.encode("utf-8")
    return out


def _has_content(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def host_diff(files: Mapping[str, bytes], host: HostParams, base: HostParams) -> str:
    """A unified diff from the ``base`` (default) host render to the ``host`` one, for inspect/install."""
    before, after = render_host(files, base), render_host(files, host)
    chunks: list[str] = []
    for rel in sorted(files):
        a = before.get(rel, b"").decode("utf-8").splitlines(keepends=True)
        b = after.get(rel, b"").decode("utf-8").splitlines(keepends=True)
        chunks.extend(difflib.unified_diff(a, b, f"default/deploy/{rel}", f"host/deploy/{rel}"))
    return "".join(chunks)
