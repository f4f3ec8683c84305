"""How every engine container is confined, on every target (the docker SDK's run arguments, Compose, the
``docker run`` unit, the podman quadlet and the Kubernetes ``securityContext``), from one set of facts:

- no privilege escalation (``no-new-privileges``; Kubernetes ``allowPrivilegeEscalation: false``) and the
  runtime's default seccomp profile;
- every capability dropped; ``NET_BIND_SERVICE`` given back only when the engine listens below port 1024
  (TGI's port 80 in its own network namespace, or ``--port`` under 1024 with host networking);
- a read-only root filesystem where the profile allows it (``read_only_root``), with a tmpfs (Kubernetes: an
  ``emptyDir``) on each folder the engine writes to (``writable_dirs``). ``exec`` is kept on them: Triton,
  torch.compile and FlashInfer load the kernels they build there.

The engines run as the image's user (root in the official images) with no capability: the files airpack mounts
(weights, key file, Modelfile) are owned by whoever ran ``install``, which is root as the README says.
"""

from __future__ import annotations

from airpack.profiles import RuntimeProfile

CAP_DROP = ("ALL",)
BIND_CAP = "NET_BIND_SERVICE"
NO_NEW_PRIVILEGES = "no-new-privileges:true"
TMPFS_OPTIONS = "rw,exec,nosuid,nodev"
PRIVILEGED_PORTS = 1024


def scratch_dirs(profile: RuntimeProfile) -> tuple[str, ...]:
    """The tmpfs folders of a read-only root filesystem; none when the root stays writable."""
    return profile.writable_dirs if profile.read_only_root else ()


def cap_add(listen_port: int) -> tuple[str, ...]:
    """The one capability an engine may need back: binding a port below 1024 inside its network namespace."""
    return (BIND_CAP,) if listen_port < PRIVILEGED_PORTS else ()


def low_port_expr(inner_port: int) -> str:
    """The same decision as a stage-2 Jinja test over the host parameters (for the deploy templates)."""
    return f'(host.port if host.network == "host" else {int(inner_port)}) < {PRIVILEGED_PORTS}'
