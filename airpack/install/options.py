"""What the operator chose for an install (``airpack install`` options), checked when built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from airpack.errors import UsageError
from airpack.install import targets
from airpack.install.flags import check_install_flags


@dataclass(frozen=True)
class InstallOptions:
    """``health_timeout`` None: the engine profile's start period. ``registry`` (``HOST[:PORT][/PREFIX]``, where
    ``airpack push`` put the images) is for a target that pulls from one (kubernetes), ``apply`` for one that
    can be applied from here (``kubectl apply``)."""

    prefix: Path
    target: str = targets.DEFAULT
    port: int = 8000
    bind: str = "127.0.0.1"
    network: str = "host"
    allow_downgrade: bool = False
    api_key: bool = True
    registry: str | None = None
    apply: bool = False
    health_timeout: float | None = None
    keep: int | None = None  # after a successful install, keep at most this many versions (None: all)
    weights: str | None = None  # kubernetes: image-volume, init-copy or host-path (None: the spec's choice)

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 1:
            raise UsageError(f"--keep {self.keep}: keep at least 1 version")
        check_install_flags(self.target, registry=self.registry, apply=self.apply, show_diff=False,
                            weights=self.weights)
        if targets.get(self.target).needs_registry and not self.registry:
            raise UsageError(f"--target {self.target} needs --registry HOST[:PORT][/PREFIX]",
                             hint="the registry 'airpack push' put the images in")
