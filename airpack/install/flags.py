"""Which ``install`` flags apply to which target: a flag that would silently do nothing is refused (exit 2)."""

from __future__ import annotations

from airpack.errors import RefusedError
from airpack.install import targets


def check_install_flags(target: str, *, registry: str | None, apply: bool, show_diff: bool) -> None:
    """Refuse an unknown target and any flag given that ``target`` would ignore."""
    t = targets.get(target)
    given = {"--registry": registry is not None, "--apply": apply, "--show-diff": show_diff}
    ignored = [flag for flag, on in given.items() if on and flag not in t.flags]
    if ignored:
        where = "; ".join(f"{flag} only with --target {' or '.join(targets.taking(flag))}" for flag in ignored)
        hint = ("'airpack inspect BUNDLE --show-diff' shows how install changes the deploy files"
                if "--show-diff" in ignored else "leave it out")
        raise RefusedError(f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to "
                           f"--target {target} ({where})", hint=hint)
