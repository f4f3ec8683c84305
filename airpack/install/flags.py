"""Which ``install`` flags apply to which target: a flag that would silently do nothing is refused (exit 2)."""

from __future__ import annotations

from airpack.errors import RefusedError, UsageError

ALL_TARGETS = ("docker", "compose", "systemd", "kubernetes")
_APPLIES = {
    "--registry": ("kubernetes",),  # where 'airpack push' put the images: only a cluster pulls from a registry
    "--apply": ("kubernetes",),  # kubectl apply
    "--show-diff": ("compose", "systemd", "kubernetes"),  # the docker target writes no deploy files to diff
}


def check_install_flags(target: str, *, registry: str | None, apply: bool, show_diff: bool) -> None:
    """Refuse an unknown target and any flag given that ``target`` would ignore."""
    if target not in ALL_TARGETS:
        raise UsageError(f"--target {target!r} is not one of {', '.join(ALL_TARGETS)}")
    given = {"--registry": registry is not None, "--apply": apply, "--show-diff": show_diff}
    ignored = [flag for flag, on in given.items() if on and target not in _APPLIES[flag]]
    if ignored:
        where = "; ".join(f"{flag} only with --target {' or '.join(_APPLIES[flag])}" for flag in ignored)
        hint = ("'airpack inspect BUNDLE --show-diff' shows how install changes the deploy files"
                if "--show-diff" in ignored else "leave it out")
        raise RefusedError(f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to "
                           f"--target {target} ({where})", hint=hint)
