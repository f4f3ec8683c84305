"""``airpack render --target helm``: a Helm chart whose templates are the bundle's own signed Kubernetes files.

The chart is not a second copy of the manifests: each stage-2 deploy file (a Jinja template over ``host.*``,
as install renders it) is translated, node by node, into a Go template over ``.Values`` — the same text, the
same conditions — so the chart and ``render --target kubernetes`` cannot drift apart. Written by hand because
no library turns Jinja into Go templates; the stage-2 files use a small, fixed grammar (``host.<name>``
lookups, ``==``/``>`` comparisons, ``is defined``, a conditional expression, ``fail()``) and anything else is
refused, so a template change that the translator does not know fails the tests, not a user's cluster.

What stage 1 fixed from the spec becomes a value too: replicas (with the update strategy and a
PodDisruptionBudget above one), nodeSelector, tolerations, the engine image (pinned by digest) and the API
key's Secret name; the namespace is the release's. ``values.schema.json`` makes Helm refuse a bad digest, an
unknown weights mode or zero replicas before anything is rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from jinja2 import nodes

from airpack.errors import BuildError
from airpack.profiles.context import DeployContext
from airpack.render import HostParams, stage2_ast
from airpack.spec_kubernetes import WEIGHTS_MODES

_VALUES = {"registry": ".Values.registry", "gpus": ".Values.gpus", "port": ".Values.port",
           "weights": ".Values.weights.mode", "model_digest": ".Values.model.digest",
           "weights_digest": ".Values.weights.imageDigest", "prefix": ".Values.hostPath.prefix",
           "api_key_file": ".Values.apiKey.secretName"}
_NUMBERS = {"gpus", "port"}
_DIGEST = "^sha256:[0-9a-f]{64}$"


@dataclass(frozen=True)
class ChartInputs:
    """What the chart's defaults come from: the deploy context (stage 1) and the host parameters (stage 2)."""

    ctx: DeployContext
    params: HostParams
    key_secret: str | None  # None: no API key


# ---- Jinja (stage 2) → Go template --------------------------------------------------------------------


def _host_attr(node: nodes.Node) -> str:
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "host" \
            and node.attr in _VALUES:
        return node.attr
    raise BuildError(f"helm: cannot translate {node!r} in a deploy file")


def _value(node: nodes.Node) -> str:
    if isinstance(node, nodes.Const) and isinstance(node.value, str | int) and not isinstance(node.value, bool):
        return json.dumps(node.value)
    attr = _host_attr(node)
    return f"(int {_VALUES[attr]})" if attr in _NUMBERS else _VALUES[attr]


def _cond(node: nodes.Node) -> str:
    if isinstance(node, nodes.Test) and node.name == "defined":
        return _VALUES[_host_attr(node.node)]  # only api_key_file is tested: its Secret name is set
    if isinstance(node, nodes.Compare) and len(node.ops) == 1:
        op = {"eq": "eq", "ne": "ne", "gt": "gt", "gteq": "ge", "lt": "lt", "lteq": "le"}.get(node.ops[0].op)
        if op:
            return f"{op} {_value(node.expr)} {_value(node.ops[0].expr)}"
    raise BuildError(f"helm: cannot translate the condition {node!r}")


def _expr(node: nodes.Node) -> str:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return json.dumps(node.value)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "fail" \
            and len(node.args) == 1 and isinstance(node.args[0], nodes.Const):
        return f"fail {json.dumps(str(node.args[0].value))}"
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        return f"ternary {_value(node.expr1)} {_value(node.expr2)} ({_cond(node.test)})"
    return _VALUES[_host_attr(node)]


class _Go:
    """The Go template text; a block tag on its own line keeps the output's lines as Jinja's trim and lstrip
    left them (``{{- tag }}`` then a newline, Helm's usual form); elsewhere it stays inline."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def data(self, text: str) -> None:
        self.parts.append(text.replace("{{", '{{ "{{" }}'))

    def action(self, text: str) -> None:
        self.parts.append("{{ " + text + " }}")

    def block(self, tag: str) -> None:
        if self.parts and self.parts[-1].endswith("\n"):
            self.parts.append("{{- " + tag + " }}\n")
        else:
            self.parts.append("{{ " + tag + " }}")

    def text(self) -> str:
        return "".join(self.parts)


def _emit(go: _Go, body: list[nodes.Node]) -> None:
    for node in body:
        if isinstance(node, nodes.Output):
            for part in node.nodes:
                if isinstance(part, nodes.TemplateData):
                    go.data(part.data)
                else:
                    go.action(_expr(part))
        elif isinstance(node, nodes.If):
            go.block(f"if {_cond(node.test)}")
            _emit(go, node.body)
            for elif_ in node.elif_:
                go.block(f"else if {_cond(elif_.test)}")
                _emit(go, elif_.body)
            if node.else_:
                go.block("else")
                _emit(go, node.else_)
            go.block("end")
        else:
            raise BuildError(f"helm: cannot translate {type(node).__name__} in a deploy file")


def translate(rel: str, source: str) -> str:
    """One stage-2 deploy file as a Go template over ``.Values`` (the same output for the same values)."""
    go = _Go()
    _emit(go, stage2_ast(rel, source).body)
    return go.text()


# ---- what stage 1 fixed, made a value ------------------------------------------------------------------

_STRATEGY = re.compile(r"  strategy:\n(    .*\n)+")
_POD_FIELD = re.compile(r"      (nodeSelector|tolerations):\n((        .*\n)+)")
_GPU_RESOURCES = (
    '{{- if gt (int .Values.gpus) 0 }}\n          resources:\n            limits:\n'
    '              nvidia.com/gpu: {{ .Values.gpus }}\n{{- end }}\n'
)
_RESOURCES = """\
{{- $limits := deepCopy (.Values.resources.limits | default dict) }}
{{- if gt (int .Values.gpus) 0 }}{{- $_ := set $limits "nvidia.com/gpu" (int .Values.gpus) }}{{- end }}
{{- if or $limits .Values.resources.requests }}
          resources:
{{- with $limits }}
            limits:
              {{- toYaml . | nindent 14 }}
{{- end }}
{{- with .Values.resources.requests }}
            requests:
              {{- toYaml . | nindent 14 }}
{{- end }}
{{- end }}
"""
_PLACEMENT = """\
{{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
{{- end }}
{{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
{{- end }}
"""
_ROLLING = """\
  strategy:
{{- if gt (int .Values.replicas) 1 }}
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 1
{{- else }}
    type: Recreate
{{- end }}
"""


def _deployment(text: str, ctx: DeployContext) -> str:
    text = re.sub(r"^  replicas: \d+\n", "  replicas: {{ .Values.replicas }}\n", text, count=1, flags=re.MULTILINE)
    text = _STRATEGY.sub(lambda _: _ROLLING, text, count=1)
    text = _POD_FIELD.sub("", text)
    anchor = "      automountServiceAccountToken: false\n"
    if anchor not in text or _GPU_RESOURCES not in text:
        raise BuildError("helm: the Deployment does not have the shape the chart expects")
    text = text.replace(anchor, anchor + _PLACEMENT, 1).replace(_GPU_RESOURCES, _RESOURCES, 1)
    text = text.replace(f"secretName: {ctx.slug}-api-key", "secretName: {{ .Values.apiKey.secretName }}")
    return text.replace(f"/{ctx.image_registry}", "/{{ .Values.images.engine }}")


def _chart_file(rel: str, text: str, ctx: DeployContext) -> str:
    text = re.sub(r"^  namespace: \S+\n", "  namespace: {{ .Release.Namespace }}\n", text, flags=re.MULTILINE)
    return _deployment(text, ctx) if rel == "deployment.yaml" else text


def _pdb(ctx: DeployContext) -> str:
    """The PodDisruptionBudget above one replica, and the refusals that depend on the replica count."""
    one_node = ['{{- if and (eq .Values.weights.mode "host-path") (gt (int .Values.replicas) 1) }}',
                '{{- fail "weights host-path serve one node: use image-volume or init-copy with replicas > 1" }}',
                "{{- end }}"]
    if ctx.kubernetes.storage_class:
        one_node += ['{{- if and (eq .Values.weights.mode "init-copy") (gt (int .Values.replicas) 1) }}',
                     '{{- fail "init-copy into a ReadWriteOnce claim serves one node: use image-volume" }}',
                     "{{- end }}"]
    return "\n".join([*one_node, "{{- if gt (int .Values.replicas) 1 }}", "apiVersion: policy/v1",
                      "kind: PodDisruptionBudget", "metadata:", f"  name: {ctx.slug}",
                      "  namespace: {{ .Release.Namespace }}", "  labels:", f"    app.kubernetes.io/name: {ctx.slug}",
                      "    app.kubernetes.io/managed-by: airpack", "spec:", "  maxUnavailable: 1", "  selector:",
                      "    matchLabels:", f"      app.kubernetes.io/name: {ctx.slug}",
                      "      app.kubernetes.io/component: server", "{{- end }}", ""])


# ---- values, schema, Chart.yaml ------------------------------------------------------------------------


def values(inputs: ChartInputs) -> dict[str, Any]:
    """The chart's defaults: what ``render --target kubernetes`` would write for the same options."""
    ctx, p = inputs.ctx, inputs.params
    return {
        "registry": p.registry, "replicas": ctx.replicas, "gpus": p.gpus, "port": p.port,
        "images": {"engine": ctx.image_registry},
        "model": {"digest": p.model_digest},
        "weights": {"mode": p.weights, "imageDigest": p.weights_digest or ""},
        "hostPath": {"prefix": p.prefix},
        "apiKey": {"secretName": inputs.key_secret or ""},
        "nodeSelector": dict(ctx.kubernetes.node_selector),
        "tolerations": [t.to_dict() for t in ctx.kubernetes.tolerations],
        "resources": {"limits": {}, "requests": {}},
    }


def schema() -> dict[str, Any]:
    digest = {"type": "string", "pattern": _DIGEST}
    quantities = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,  # a misspelt value is refused, not ignored
        "required": ["registry", "replicas", "gpus", "port", "images", "model", "weights", "apiKey"],
        "properties": {
            "registry": {"type": "string", "pattern": r"^[A-Za-z0-9.:\[\]-]+(/[a-z0-9._-]+)*$"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 1000},
            "gpus": {"type": "integer", "minimum": 0, "maximum": 64},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "global": {"type": "object"},  # Helm's own
            "images": {"type": "object", "required": ["engine"], "additionalProperties": False, "properties": {
                "engine": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$"}}},
            "model": {"type": "object", "required": ["digest"], "properties": {"digest": digest}},
            "weights": {"type": "object", "required": ["mode"], "properties": {
                "mode": {"enum": list(WEIGHTS_MODES)},
                "imageDigest": {"type": "string", "pattern": f"({_DIGEST})|^$"}},
                "if": {"properties": {"mode": {"const": "init-copy"}}},
                "then": {"required": ["imageDigest"], "properties": {"imageDigest": digest}}},
            "hostPath": {"type": "object", "properties": {"prefix": {"type": "string",
                                                                     "pattern": r"^/[A-Za-z0-9._/+@=-]*$"}}},
            "apiKey": {"type": "object", "properties": {"secretName": {
                "type": "string", "pattern": r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"}}},
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
            "tolerations": {"type": "array", "items": {"type": "object"}},
            "resources": {"type": "object", "additionalProperties": False,
                          "properties": {"limits": quantities, "requests": quantities}},
        },
    }


def _readme(ctx: DeployContext, vals: Mapping[str, Any]) -> str:
    ns = ctx.kubernetes.namespace or "default"
    init = "" if vals["weights"]["imageDigest"] else (
        " `weights.mode: init-copy` also needs `weights.imageDigest` (`airpack render --weights init-copy` fills"
        " it in; `airpack push --weights-image` pushes that image).")
    return (f"# {ctx.slug} {ctx.version}\n\nRendered by `airpack render --target helm` from a verified bundle: "
            "the templates are the bundle's signed Kubernetes files, the images and the model pinned by digest "
            "in `values.yaml` (push them first with `airpack push --registry`).\n\n"
            f"    helm install {ctx.slug} . --namespace {ns} --create-namespace\n\n"
            "Values: `registry`, `replicas` (a PodDisruptionBudget above one), `gpus` (per replica), "
            "`resources`, `weights.mode` (image-volume, init-copy, host-path), `nodeSelector`, `tolerations`, "
            f"`apiKey.secretName` (empty: no API key; create the Secret with key `api-key`).{init} "
            "`values.schema.json` says what each takes.\n")


def chart(inputs: ChartInputs, k8s_files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The chart's files (path → bytes) from the target's signed stage-2 files (``kubernetes/…`` paths)."""
    ctx = inputs.ctx
    vals = values(inputs)
    out: dict[str, bytes] = {
        "Chart.yaml": yaml.safe_dump({
            "apiVersion": "v2", "name": ctx.slug, "version": ctx.version, "appVersion": ctx.version,
            "type": "application", "description": f"{ctx.name} {ctx.version}, served by {ctx.profile.engine} "
            "(rendered by airpack from a signed bundle)"}, sort_keys=False).encode(),
        "values.yaml": ("# airpack: the defaults equal 'airpack render --target kubernetes' for the same options.\n"
                        + yaml.safe_dump(vals, sort_keys=False)).encode(),
        "values.schema.json": (json.dumps(schema(), indent=2) + "\n").encode(),
        "README.md": _readme(ctx, vals).encode(),
        "templates/pdb.yaml": _pdb(ctx).encode(),
    }
    for rel, data in sorted(k8s_files.items()):
        name = rel.removeprefix("kubernetes/")
        if name == "pdb.yaml":
            continue  # the chart's own, on .Values.replicas
        out[f"templates/{name}"] = _chart_file(name, translate(rel, data.decode("utf-8")), ctx).encode()
    return out
