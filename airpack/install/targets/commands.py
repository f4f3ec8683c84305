"""The outside tools the compose, systemd and kubernetes targets drive: Compose, systemd and kubectl.

The commands an operator would type are pure functions (unit tested); :func:`run` runs them (argument lists,
never a shell). Nothing here prints: commands that are not run are returned for the CLI to show.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from airpack.errors import InstallError

SYSTEMD_UNIT_DIR = "/etc/systemd/system"
QUADLET_DIR = "/etc/containers/systemd"
COMMAND_TIMEOUT = 600.0


def shell_line(argv: Sequence[str]) -> str:
    """``argv`` as one line a POSIX shell runs unchanged."""
    return " ".join(shlex.quote(a) for a in argv)


def run(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command; InstallError (with its last output) when it cannot start or exits non-zero."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"'{shell_line(argv)}' failed: {exc}") from None
    if out.returncode != 0:
        tail = " | ".join((out.stderr or out.stdout).strip().splitlines()[-20:])  # one line: errors are escaped
        raise InstallError(f"'{shell_line(argv)}' exited with {out.returncode}: {tail}")
    return out


# ---- compose --------------------------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    """``docker-compose`` (v1) or ``docker compose`` (v2 plugin), whichever this host has; None when neither."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def compose_project(slug: str, prefix: Path) -> str:
    """A Compose project name, stable for one prefix and distinct across prefixes (lowercase, dashes)."""
    return f"airpack-{slug}-{hashlib.sha256(str(prefix).encode()).hexdigest()[:8]}"


def compose_argv(base: Sequence[str], file: Path, project: str, *args: str) -> list[str]:
    return [*base, "-f", str(file), "-p", project, *args]


# ---- systemd --------------------------------------------------------------------------------------------


def systemd_running() -> bool:
    """True when PID 1 is systemd and ``systemctl`` exists (a container or chroot usually has neither)."""
    try:
        comm = Path("/proc/1/comm").read_text().strip()
    except OSError:
        return False
    return comm == "systemd" and shutil.which("systemctl") is not None


def systemd_commands(service: Path) -> list[list[str]]:
    """Install the docker-run unit and start it now and at boot."""
    unit = service.name
    return [
        ["install", "-m", "0644", str(service), f"{SYSTEMD_UNIT_DIR}/{unit}"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", unit],
    ]


def quadlet_commands(container: Path) -> list[list[str]]:
    """The podman alternative (podman >= 4.4): a quadlet's generated unit is started, not enabled."""
    return [
        ["install", "-m", "0644", str(container), f"{QUADLET_DIR}/{container.name}"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "start", container.with_suffix(".service").name],
    ]


def systemd_switch_commands(service: Path) -> list[list[str]]:
    """Make the unit run another version (upgrade, rollback): that version's file over the unit, restarted."""
    unit = service.name
    return [
        ["install", "-m", "0644", str(service), f"{SYSTEMD_UNIT_DIR}/{unit}"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", unit],
        ["systemctl", "restart", unit],
    ]


def quadlet_switch_commands(container: Path) -> list[list[str]]:
    """The podman alternative of :func:`systemd_switch_commands`."""
    return [
        ["install", "-m", "0644", str(container), f"{QUADLET_DIR}/{container.name}"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", container.with_suffix(".service").name],
    ]


def systemd_remove_commands(unit: str) -> list[list[str]]:
    """Stop the unit, keep it from starting at boot, and remove its file."""
    return [
        ["systemctl", "disable", "--now", unit],
        ["rm", "-f", f"{SYSTEMD_UNIT_DIR}/{unit}"],
        ["systemctl", "daemon-reload"],
    ]


def quadlet_remove_commands(unit: str) -> list[list[str]]:
    """The podman alternative of :func:`systemd_remove_commands` (a quadlet's unit is generated, not enabled)."""
    container = Path(unit).with_suffix(".container").name
    return [
        ["systemctl", "stop", unit],
        ["rm", "-f", f"{QUADLET_DIR}/{container}"],
        ["systemctl", "daemon-reload"],
    ]


def unit_failed(unit: str) -> str | None:
    """Why ``unit`` stopped (systemd gave up on it), or None while it runs or starts."""
    out = subprocess.run(["systemctl", "is-failed", "--quiet", unit], check=False, timeout=30)
    return f"{unit} failed" if out.returncode == 0 else None


def journal_tail(unit: str, lines: int = 20) -> list[str]:
    try:
        out = subprocess.run(
            ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.stdout.splitlines() if line.strip()][-lines:]


# ---- kubernetes -----------------------------------------------------------------------------------------


def api_key_secret(slug: str, key: str, namespace: str | None = None) -> bytes:
    """The Secret the Deployment mounts at ``/run/airpack-secrets/api-key`` (``<slug>-api-key``, key ``api-key``)."""
    data = base64.b64encode(key.encode()).decode()
    ns = f"  namespace: {namespace}\n" if namespace else ""
    return (
        f"# airpack: the endpoint's API key; written 0600, apply it and keep it out of version control.\n"
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {slug}-api-key\n{ns}  labels:\n"
        f"    app.kubernetes.io/name: {slug}\n    app.kubernetes.io/managed-by: airpack\n"
        f"type: Opaque\ndata:\n  api-key: {data}\n"
    ).encode()


def kubectl_commands(folder: Path) -> list[list[str]]:
    return [["kubectl", "apply", "-f", str(folder)]]


def kubectl_delete_commands(folder: Path) -> list[list[str]]:
    return [["kubectl", "delete", "-f", str(folder), "--ignore-not-found"]]


def push_command(bundle: Path, registry: str, *, weights_image: bool = False) -> list[str]:
    return ["airpack", "push", str(bundle), "--key", "<trusted.pub>", "--registry", registry,
            *(["--weights-image"] if weights_image else [])]
