"""Which ``install`` flags apply to which target: a flag that would silently do nothing is refused (exit 2); so
is an API key for a runtime that cannot require one."""

from __future__ import annotations

from airpack.errors import RefusedError, UsageError
from airpack.install import targets
from airpack.profiles.context import DeployContext
from airpack.spec_kubernetes import WEIGHTS_MODES


def check_install_flags(target: str, *, registry: str | None, apply: bool, show_diff: bool,
                        weights: str | None = None) -> None:
    """Refuse an unknown target, an unknown weights mode and any flag given that ``target`` would ignore."""
    t = targets.get(target)
    if weights is not None and weights not in WEIGHTS_MODES:
        raise UsageError(f"--weights {weights}: not one of {', '.join(WEIGHTS_MODES)}")
    given = {"--registry": registry is not None, "--apply": apply, "--show-diff": show_diff,
             "--weights": weights is not None}
    ignored = [flag for flag, on in given.items() if on and flag not in t.flags]
    if ignored:
        where = "; ".join(f"{flag} only with --target {' or '.join(targets.taking(flag))}" for flag in ignored)
        hint = ("'airpack inspect BUNDLE --show-diff' shows how install changes the deploy files"
                if "--show-diff" in ignored else "leave it out")
        raise RefusedError(f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to "
                           f"--target {target} ({where})", hint=hint)


def check_api_key(ctx: DeployContext, api_key: bool, *, verb: str = "install") -> None:
    """Refuse an API key for a runtime that cannot require one (Ollama), before anything is changed."""
    if api_key and (reason := ctx.api_key_refusal) is not None:
        raise RefusedError(f"{reason}: {verb} with --no-api-key and put an authenticating proxy in front of it")
