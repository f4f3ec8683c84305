"""``airpack render``: the deploy files ``airpack install --target T`` would write, rendered for a host, into a
folder of their own, for GitOps (commit them; let Argo CD or Flux apply them).

The bundle is verified as for every far-side verb; then the target's signed ``deploy/`` files (each re-hashed
as read) are rendered with the same host parameters an install at the prefix would use, and written atomically
(a temporary folder beside ``out``, renamed onto it). Nothing else happens: no engine, no prefix, no network, no
state, no API key made. Where install would put a generated key into the files (the Kubernetes Secret), render
does not: the files reference the key by its path on the host, or the Secret by its name.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airpack._fs import atomic_write_bytes, fsync_dir
from airpack.deploy import deploy_context
from airpack.errors import RefusedError, UsageError
from airpack.install import host, model_update, targets
from airpack.install.deploy_files import host_params, signed_deploy
from airpack.install.flags import check_api_key, check_install_flags
from airpack.render import render_host
from airpack.verify import VerifiedBundle

HELM = "helm"  # render only: a chart whose templates are the kubernetes target's files
DEFAULT_ROOT = Path("/opt/airpack")  # the prefix is <root>/<name> unless the caller names one


@dataclass(frozen=True)
class RenderOptions:
    """The host parameters of ``airpack render``, checked when built (as :class:`InstallOptions` checks
    install's). ``prefix`` None: ``/opt/airpack/<name>``, where the files expect the weights and the key."""

    target: str  # an install target's name, or "helm" (a chart of the kubernetes files)
    out: Path
    port: int = 8000
    bind: str = "127.0.0.1"
    network: str = "host"
    registry: str | None = None
    api_key: bool = True
    prefix: Path | None = None
    gpus: int | None = None  # GPUs per replica (None: the spec's target.gpus)
    weights: str | None = None  # kubernetes: image-volume, init-copy or host-path (None: the spec's choice)

    def __post_init__(self) -> None:
        t = targets.get(self.install_target)
        if "--show-diff" not in t.flags:  # a target whose install writes no deploy files
            takers = ", ".join(n for n, x in targets.TARGETS.items() if "--show-diff" in x.flags)
            raise UsageError(f"--target {self.target} writes no deploy files: render takes {takers}, {HELM}")
        check_install_flags(self.install_target, registry=self.registry, apply=False, show_diff=False,
                            weights=self.weights)
        if self.gpus is not None and not 0 <= self.gpus <= 64:
            raise UsageError(f"--gpus {self.gpus}: a GPU count per replica, 0-64")
        if t.needs_registry and not self.registry:
            raise UsageError(f"--target {self.target} needs --registry HOST[:PORT][/PREFIX]",
                             hint="the registry 'airpack push' put the images in")
        check_out(self.out)

    @property
    def install_target(self) -> str:
        """The install target whose files are rendered (a Helm chart is made of the kubernetes files)."""
        return "kubernetes" if self.target == HELM else self.target


@dataclass(frozen=True)
class RenderResult:
    """What ``render`` wrote: ``files`` relative to ``out``; ``api_key_file`` the host path they read the key
    from (None: rendered with ``--no-api-key``)."""

    bundle: Path
    name: str
    version: str
    target: str
    out: Path
    prefix: Path
    files: tuple[str, ...]
    api_key_file: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "name": self.name, "version": self.version, "target": self.target,
                "out": str(self.out), "prefix": str(self.prefix), "files": list(self.files),
                "apiKeyFile": self.api_key_file}


def check_out(out: Path) -> None:
    """``out`` must be new or an empty folder (exit 2 otherwise): render never mixes its files with others."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RefusedError(f"--out {out}: not a folder", hint="name a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise RefusedError(f"--out {out}: the folder is not empty", hint="name a new or empty folder")


def render_files(verified: VerifiedBundle, options: RenderOptions) -> dict[str, bytes]:
    """The target's deploy files (path relative to ``deploy/`` → bytes), rendered exactly as an install of this
    bundle at ``options.prefix`` would render them."""
    m = verified.manifest
    rt = model_update.runtime_for(verified, None)  # a model-only bundle has no runtime to deploy: refused
    ctx = deploy_context(rt.spec, rt.lock, rt.images)
    check_api_key(ctx, options.api_key, verb="render")
    prefix = (options.prefix or DEFAULT_ROOT / m.name).absolute()
    target = targets.get(options.install_target)
    params = host_params(verified, ctx, target, prefix, port=options.port, bind=options.bind, network=options.network,
                         registry=options.registry, api_key=options.api_key, gpus=options.gpus,
                         weights=options.weights)
    chosen = target.deploy_files(signed_deploy(verified.path, m))
    if options.target == HELM:
        from airpack.install.helm_chart import ChartInputs, chart  # noqa: PLC0415

        return chart(ChartInputs(ctx, params, f"{ctx.slug}-api-key" if options.api_key else None), chosen)
    return render_host(chosen, params)


def write_tree(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary folder beside ``out``, then rename it onto ``out`` (new or empty)."""
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for rel, data in sorted(files.items()):
            atomic_write_bytes(tmp / rel, data)
        tmp.chmod(0o755)  # deploy files, as install writes them
        check_out(out)
        tmp.replace(out)  # replaces an empty folder in one step
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    fsync_dir(out.parent)


def render(verified: VerifiedBundle, options: RenderOptions) -> RenderResult:
    """Render the deploy files of ``options.target`` for this bundle into ``options.out``; nothing else."""
    m = verified.manifest
    files = render_files(verified, options)
    write_tree(options.out, files)
    prefix = (options.prefix or DEFAULT_ROOT / m.name).absolute()
    return RenderResult(bundle=verified.path, name=m.name, version=m.version, target=options.target,
                        out=options.out, prefix=prefix, files=tuple(sorted(files)),
                        api_key_file=str(prefix / host.API_KEY_FILE) if options.api_key else None)
