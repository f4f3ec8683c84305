"""What both sides share when an image meets a local docker engine: the SDK's errors and the airpack-owned tag.

The build side saves engine-only images into a layout (``airpack.oci.engine_save``); the far side loads a verified
layout into an engine (``airpack.oci.engine_load``). Uses the docker SDK (``docker.DockerClient``), imported only
when an error is caught; typed loosely because the SDK ships no type hints.
"""

from __future__ import annotations

from collections.abc import Callable

from airpack._fs import IO_BLOCK
from airpack.lock import LockedImage
from airpack.oci.reference import parse_reference

Progress = Callable[[int], None]
AIRPACK_REGISTRY = "airpack.local"
BLOCK = IO_BLOCK


def docker_errors() -> tuple[type[Exception], ...]:
    import docker.errors  # noqa: PLC0415

    return (docker.errors.DockerException,)


def stream_errors() -> tuple[type[Exception], ...]:
    """What a failed stream to or from the engine can raise (our generator's error may come back wrapped)."""
    import requests  # noqa: PLC0415
    import urllib3.exceptions  # noqa: PLC0415

    return (*docker_errors(), requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def airpack_tag(locked: LockedImage) -> str:
    """The airpack-owned tag for a loaded image: ``airpack.local/<repo>:<12 hex of the locked digest>``."""
    repo = parse_reference(locked.ref).repository
    return f"{AIRPACK_REGISTRY}/{repo}:{(locked.digest or locked.config_digest)[7:19]}"
