"""``deploy.kubernetes``: how the model reaches the pods and where they run.

``weights`` is how the engine container gets the model: ``image-volume`` (the default: the ModelPack artifact
``airpack push`` put in the site registry, mounted read-only by digest; Kubernetes 1.33+ with image volumes),
``init-copy`` (an init container copies it from the weights image into an ``emptyDir``, or into a claim of
``storageClass``, checking each file's sha256 as it copies), or ``host-path`` (the node's copy under the install
prefix: one node only). The names and values are checked as Kubernetes checks them, so a typo fails the lock,
not the rollout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airpack import spec_fields as sf

WEIGHTS_MODES = ("image-volume", "init-copy", "host-path")
DEFAULT_WEIGHTS = "image-volume"
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
OPERATORS = ("Equal", "Exists")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Toleration:
    """One ``tolerations[]`` entry, as the pod spec takes it."""

    key: str | None = None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None
    seconds: int | None = None  # tolerationSeconds: NoExecute only

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator, "value": self.value,
                               "effect": self.effect, "tolerationSeconds": self.seconds}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class KubernetesSpec:
    """``deploy.kubernetes``; every field optional."""

    weights: str = DEFAULT_WEIGHTS
    namespace: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    storage_class: str | None = None  # init-copy: copy into a claim of this class instead of an emptyDir

    def to_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "namespace": self.namespace, "nodeSelector": dict(self.node_selector),
                "tolerations": [t.to_dict() for t in self.tolerations], "storageClass": self.storage_class}


def label_key(where: str, value: Any) -> str:
    """A label key: ``[prefix/]name``, the prefix a DNS subdomain, the name 63 characters at most."""
    text = sf.string(where, value)
    prefix, _, name = text.rpartition("/")
    if (prefix and not _DNS_SUBDOMAIN.match(prefix)) or not _LABEL_NAME.match(name):
        raise sf.fail(where, f"{text!r} is not a Kubernetes label key like 'nvidia.com/gpu.product'")
    return text


def _label_value(where: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not _LABEL_VALUE.match(text):
        raise sf.fail(where, f"{value!r} is not a Kubernetes label value (63 letters, digits, '-', '_', '.')")
    return text


def _dns(where: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    text = sf.string(where, value)
    if not pattern.match(text):
        raise sf.fail(where, f"{text!r} is not {what}")
    return text


def _node_selector(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    data = sf.mapping(where, value)
    return tuple(sorted((label_key(f"{where}.{k}", k), _label_value(f"{where}.{k}", v)) for k, v in data.items()))


def _toleration(where: str, value: Any) -> Toleration:
    data = sf.mapping(where, value)
    sf.check_keys(where, data, ("key", "operator", "value", "effect", "tolerationSeconds"))
    key = sf.opt(data, "key", where, label_key)
    operator = sf.opt(data, "operator", where, lambda k, v: sf.choice(k, v, OPERATORS)) or "Equal"
    val = sf.opt(data, "value", where, _label_value)
    effect = sf.opt(data, "effect", where, lambda k, v: sf.choice(k, v, EFFECTS))
    seconds = sf.opt(data, "tolerationSeconds", where, sf.integer)
    if operator == "Exists" and val:
        raise sf.fail(f"{where}.value", "must be left out when operator is 'Exists'")
    if operator == "Equal" and key is None:
        raise sf.fail(f"{where}.key", "is required when operator is 'Equal' (only 'Exists' matches every key)")
    if seconds is not None and effect != "NoExecute":
        raise sf.fail(f"{where}.tolerationSeconds", "only applies to effect 'NoExecute'")
    return Toleration(key=key, operator=operator, value=val, effect=effect, seconds=seconds)


def parse_kubernetes(where: str, value: Any) -> KubernetesSpec:
    """``deploy.kubernetes`` (null or a mapping)."""
    data: Mapping[str, Any] = {} if value is None else sf.mapping(where, value)
    sf.check_keys(where, data, ("weights", "namespace", "nodeSelector", "tolerations", "storageClass"))
    tolerations = data.get("tolerations")
    if tolerations is not None and not isinstance(tolerations, list):
        raise sf.fail(f"{where}.tolerations", f"must be a list, got {sf.typename(tolerations)}")
    return KubernetesSpec(
        weights=sf.opt(data, "weights", where, lambda k, v: sf.choice(k, v, WEIGHTS_MODES)) or DEFAULT_WEIGHTS,
        namespace=sf.opt(data, "namespace", where,
                         lambda k, v: _dns(k, v, _DNS_LABEL, "a namespace name (a DNS label: a-z, 0-9, '-')")),
        node_selector=sf.opt(data, "nodeSelector", where, _node_selector) or (),
        tolerations=tuple(_toleration(f"{where}.tolerations[{i}]", t) for i, t in enumerate(tolerations or [])),
        storage_class=sf.opt(data, "storageClass", where,
                             lambda k, v: _dns(k, v, _DNS_SUBDOMAIN, "a storage class name (a DNS subdomain)")),
    )


def signed_weights_mode(spec: Mapping[str, Any]) -> str:
    """``deploy.kubernetes.weights`` of a spec as a bundle's manifest carries it (validated when it was built)."""
    deploy = spec.get("deploy")
    k8s = deploy.get("kubernetes") if isinstance(deploy, dict) else None
    mode = k8s.get("weights") if isinstance(k8s, dict) else None
    return mode if mode in WEIGHTS_MODES else DEFAULT_WEIGHTS
