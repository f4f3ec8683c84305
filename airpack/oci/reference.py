"""Image references as docker spells them, normalised the way docker does, and target platforms.

``busybox`` means ``docker.io/library/busybox:latest``; the first path component is a registry host only
when it contains a ``.`` or a ``:`` or is ``localhost``. Parsing is pure (no I/O) so lock-time errors name
the reference before any network traffic.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from airpack.errors import SourceError, UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"  # docker.io is a name, not a host that serves the API
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` (the docker "canonical name")."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host:port that serves the distribution API for this registry."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """The short form docker prints (``busybox:1.36``, ``ghcr.io/x/y:1``), tag form only."""
        repo = self.repository
        if self.registry == DOCKER_HUB:
            name = repo.removeprefix("library/") if repo.count("/") == 1 else repo
        else:
            name = self.name
        return f"{name}:{self.tag}" if self.tag else name

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)


def parse_reference(ref: str) -> Reference:
    """Parse and normalise ``ref``; a malformed reference is a ``SourceError`` naming it."""
    text = ref.strip()
    if not text or text != ref or any(c.isspace() for c in text):
        raise SourceError(f"image reference {ref!r}: empty or contains whitespace")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise SourceError(f"image reference {ref!r}: digest must be sha256:<64 lowercase hex>")
    registry, path = DOCKER_HUB, rest
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
        if not _HOST_RE.match(registry):
            raise SourceError(f"image reference {ref!r}: bad registry host {registry!r}")
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise SourceError(f"image reference {ref!r}: bad tag {tag!r}")
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _REPO_RE.match(path):
        raise SourceError(
            f"image reference {ref!r}: bad repository {path!r}",
            hint="repository names are lowercase letters, digits and . _ - separators",
        )
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)


# ---- where an image goes in the site's registry -----------------------------------------------------------
# One rule for every site-registry reference airpack writes (``airpack push``, the Kubernetes manifests, the
# model artifact): ``HOST[:PORT][/PREFIX]`` + the source repository without its source registry host.
# ``docker.io/library/busybox`` → ``reg:5000/ai/library/busybox``; ``ghcr.io/ggml-org/llama.cpp`` →
# ``reg:5000/ai/ggml-org/llama.cpp``; ``127.0.0.1:5000/team/app`` → ``reg:5000/ai/team/app``. Always by digest.
_SITE_PREFIX_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


def split_site_registry(registry: str) -> tuple[str, str]:
    """``HOST[:PORT][/PREFIX]`` → (host, prefix); a ``UsageError`` naming the text when it is not one."""
    host, _, prefix = registry.strip("/").partition("/")
    if not host or any(c.isspace() for c in registry) or not _HOST_RE.match(host) or (
            prefix and not _SITE_PREFIX_RE.match(prefix)):
        raise UsageError(f"registry {registry!r}: expected HOST[:PORT][/PREFIX]",
                         hint="e.g. reg.local:5000/ai (the prefix is lowercase letters, digits and . _ -)")
    return host, prefix


def site_path(source: str) -> str:
    """The repository path in the site registry, below its prefix: ``source`` (an image reference or a
    ``registry/repository`` name) without its registry host."""
    return parse_reference(source).repository


def site_repository(prefix: str, source: str) -> str:
    """``PREFIX/<site_path>`` (or just the path without a prefix)."""
    path = site_path(source)
    return f"{prefix}/{path}" if prefix else path


def model_repository(prefix: str, name: str) -> str:
    """Where the model artifact of bundle ``name`` goes: ``PREFIX/<name, lowercased>`` (the same rule, with the
    bundle's name as the path)."""
    path = name.lower()
    if not _REPO_RE.match(path):
        raise UsageError(f"bundle name {name!r} is not a registry repository name",
                         hint="repository names are lowercase letters, digits and . _ - separators")
    return f"{prefix}/{path}" if prefix else path


def site_tag(version: str) -> str:
    """A bundle version as a tag (``+`` is not allowed in tags: it becomes ``-``)."""
    tag = version.replace("+", "-")
    if not _TAG_RE.match(tag):
        raise UsageError(f"version {version!r} cannot be a registry tag")
    return tag


def site_reference(registry: str, source: str, digest: str) -> str:
    """``HOST[:PORT][/PREFIX]/<path>@<digest>``: where ``airpack push --registry`` puts the image ``source``
    pinned at ``digest``, and what the Kubernetes manifests rendered for ``--registry`` name."""
    host, prefix = split_site_registry(registry)
    if not _DIGEST_RE.match(digest):
        raise SourceError(f"image {source!r}: digest {digest!r} is not sha256:<64 lowercase hex>")
    return f"{host}/{site_repository(prefix, source)}@{digest}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and 127.0.0.0/8 / ::1 (with or without a port): docker speaks plain HTTP there."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Platform:
    """``os/architecture[/variant]`` as used in an image index."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, os: str | None, architecture: str | None, variant: str | None) -> bool:
        """Does an index entry (or an image config) with these fields run here?

        A variant asked for must match (arm64's implied ``v8`` counts); none asked for accepts any.
        """
        if os != self.os or architecture != self.architecture:
            return False
        if self.variant is None:
            return True
        implied = "v8" if architecture == "arm64" else None
        return (variant or implied) == self.variant


_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "x86-64": "amd64"}


def parse_platform(text: str) -> Platform:
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise SourceError(f"platform {text!r}: expected os/architecture[/variant], e.g. linux/amd64")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else None
    if arch == "arm64" and variant == "v8":
        variant = None
    return Platform(parts[0], arch, variant)
