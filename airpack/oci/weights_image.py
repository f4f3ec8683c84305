"""The weights image: the runtime image plus one tar layer per model file, for clusters without image volumes.

An init container runs it and copies ``/airpack/model/<path>`` into an ``emptyDir`` (or a PVC), checking each
file's signed sha256 as it copies (:func:`init_copy_command`). Its base layers are the runtime image's, which
``airpack push`` put in the site registry already, so only the model's bytes travel again.

Pure apart from reading the model files to hash them (no network): the same bundle gives the same bytes, so
``airpack render`` names the image by the digest ``airpack push`` will produce, without pushing. Each added layer
is an uncompressed tar (``diff_id`` == layer digest) written by :func:`tar_frame` here, not by ``tarfile``, whose
PAX output has changed between Python versions: the build machine and the far side must agree byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airpack._fs import IO_BLOCK, open_regular, path_problem
from airpack.errors import UsageError, VerificationError
from airpack.hashing import default_workers, sha256_bytes
from airpack.oci.manifest import (
    DOCKER_LAYER,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    parse_manifest,
)
from airpack.oci.modelpack import ModelFile
from airpack.oci.reference import model_repository, site_tag, split_site_registry

IMAGE_ROOT = "airpack/model"  # in the tar: the files are /airpack/model/<path> in the container
SRC, DST = f"/{IMAGE_ROOT}", "/weights"
PARTIAL = ".airpack-partial"  # the copy's temporary name in the destination (renamed once its sha256 matched)
PATH_ANNOTATION = "dev.airpack.weights.path"
BLOCK = 512
_MAX_OCTAL_SIZE = 8**11  # the ustar size field holds 11 octal digits; larger sizes go in a PAX record

Progress = Callable[[int], None]


# ---- the tar layer -------------------------------------------------------------------------------------
def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _field(text: bytes, width: int) -> bytes:
    return text[:width].ljust(width, b"\0")


def _ustar(name: bytes, size: int, typeflag: bytes, mode: int) -> bytes:
    """One POSIX ustar header: uid/gid 0, mtime 0, no user or group name."""
    head = (_field(name, 100) + _octal(mode, 8) + _octal(0, 8) + _octal(0, 8) + _octal(size, 12) + _octal(0, 12)
            + b" " * 8 + typeflag + _field(b"", 100) + b"ustar\x0000" + _field(b"", 32) + _field(b"", 32)
            + _octal(0, 8) + _octal(0, 8) + _field(b"", 155))
    head = head.ljust(BLOCK, b"\0")
    checksum = f"{sum(head):06o}".encode() + b"\0 "
    return head[:148] + checksum + head[156:]


def _pax_record(key: str, value: bytes) -> bytes:
    """``"<len> key=value\\n"``, where ``<len>`` counts the whole record, its own digits included."""
    body = b" " + key.encode() + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) != len(str(len(body))):
        length += 1
    return str(length).encode() + body


def _entry(name: str, size: int, *, directory: bool) -> bytes:
    """The header block(s) of one member: a PAX header first when the name is not short ASCII or the size
    does not fit the ustar field."""
    raw = name.encode("utf-8")
    records = b""
    if len(raw) > 100 or not raw.isascii():
        records += _pax_record("path", raw)
    if size >= _MAX_OCTAL_SIZE:
        records += _pax_record("size", str(size).encode())
    out = b""
    if records:
        out = (_ustar(b"PaxHeaders/" + hashlib.sha256(raw).hexdigest()[:32].encode(), len(records), b"x", 0o444)
               + records + b"\0" * (-len(records) % BLOCK))
    short = raw if len(raw) <= 100 and raw.isascii() else raw[:100].decode("utf-8", "ignore").encode("ascii",
                                                                                                     "replace")
    return out + _ustar(short, 0 if size >= _MAX_OCTAL_SIZE else size, b"5" if directory else b"0",
                        0o555 if directory else 0o444)


def tar_frame(path: str, size: int) -> tuple[bytes, bytes]:
    """The bytes around the file in its layer: ``(head, tail)``, the layer being ``head + file + tail``.

    ``head`` holds a directory entry for ``airpack/``, ``airpack/model/`` and each folder above the file, then the
    file's header; ``tail`` pads the file to 512 bytes and ends the archive (two zero blocks). The one source of
    these bytes, for hashing and for pushing alike.
    """
    check_path(path)
    parts = f"{IMAGE_ROOT}/{path}".split("/")
    head = b"".join(_entry("/".join(parts[:i]) + "/", 0, directory=True) for i in range(1, len(parts)))
    head += _entry("/".join(parts), size, directory=False)
    return head, b"\0" * (-size % BLOCK + 2 * BLOCK)


def check_path(path: str) -> None:
    """Refuse a model path that would leave the destination or confuse the copy (absolute, ``..``, a control
    character, the temporary name); spaces and shell metacharacters are fine: paths are arguments, never code."""
    problem = path_problem(path, portable=False)
    if problem is None and path.split("/", 1)[0] == PARTIAL:
        problem = f"{PARTIAL} is the copy's temporary name"
    if problem:
        raise UsageError(f"model file {path!r}: {problem}", hint="the weights image holds only safe relative paths")


def _hash_layer(root: Path, file: ModelFile) -> Descriptor:
    """Stream ``head + file + tail`` through SHA-256 in ``IO_BLOCK`` reads, checking the file's own signed
    sha256 in the same pass (each byte read once; the second hash runs on a helper thread, on two alternating
    buffers, so a lone large file still hashes at one SHA-256's speed)."""
    head, tail = tar_frame(file.path, file.size)
    layer, whole = hashlib.sha256(head), hashlib.sha256()
    where = root / file.path
    try:
        fh = os.fdopen(open_regular(where), "rb", buffering=0)
    except OSError as exc:
        raise VerificationError(f"{where}: cannot read the model file ({exc})") from None
    size = min(IO_BLOCK, max(file.size, 1))
    buffers, turn, left = (bytearray(size), bytearray(size)), 0, file.size
    with fh, ThreadPoolExecutor(max_workers=1) as side:
        pending: Future[None] | None = None
        while left:
            view = memoryview(buffers[turn])[: min(size, left)]
            n = fh.readinto(view)
            if not n:
                raise VerificationError(f"{where}: ends {left} bytes early (signed size {file.size})")
            if pending is not None:
                pending.result()  # the other buffer's update is done: it may be refilled next turn
            pending = side.submit(whole.update, view[:n])
            layer.update(view[:n])  # hashlib releases the GIL on large updates: both run at once
            left, turn = left - n, turn ^ 1
        if pending is not None:
            pending.result()
        if fh.read(1):
            raise VerificationError(f"{where}: longer than its signed {file.size} bytes")
    if whole.hexdigest() != file.sha256:
        raise VerificationError(f"{where}: bytes read now do not match the signed sha256",
                                hint="the bundle changed since it was verified; copy it again")
    layer.update(tail)
    return Descriptor(OCI_LAYER, f"sha256:{layer.hexdigest()}", len(head) + file.size + len(tail),
                      annotations={PATH_ANNOTATION: file.path})


def layer_descriptors(files: Sequence[ModelFile], root: Path, *, workers: int | None = None,
                      progress: Progress | None = None) -> tuple[Descriptor, ...]:
    """Each file's tar layer descriptor (digest and size), in the order of ``files``; files hash in parallel
    threads, each read once in bounded blocks. ``progress`` gets each file's size as it finishes."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers or default_workers(), len(files) or 1))) as pool:
        futures = [pool.submit(_hash_layer, root, f) for f in files]
        out = []
        for file, future in zip(files, futures, strict=True):
            out.append(future.result())
            if progress:
                progress(file.size)
    return tuple(out)


# ---- the image -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaseImage:
    """The runtime image the weights go on: its source reference (where ``airpack push`` put it names its
    site repository), manifest digest, and exact manifest and config bytes."""

    source: str
    digest: str
    manifest: bytes
    config: bytes

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return parse_manifest(self.manifest, _media_type(self.manifest), self.source).layers


@dataclass(frozen=True)
class WeightsLayer:
    """An added layer and the model file it holds (the tar around it: :func:`tar_frame`)."""

    descriptor: Descriptor
    file: ModelFile

    def frame(self) -> tuple[bytes, bytes]:
        return tar_frame(self.file.path, self.file.size)


@dataclass(frozen=True)
class WeightsImage:
    """The config and manifest as bytes, with their descriptors; the base image; the added layers."""

    config: bytes
    config_descriptor: Descriptor
    manifest: bytes
    manifest_descriptor: Descriptor
    base: BaseImage
    layers: tuple[WeightsLayer, ...]

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        """``(path, sha256 hex)`` of each model file: what :func:`init_copy_command` takes."""
        return tuple((ly.file.path, ly.file.sha256) for ly in self.layers)


def _media_type(raw: bytes) -> str:
    return str(json.loads(raw).get("mediaType") or OCI_MANIFEST)


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _config(base: BaseImage, layers: Sequence[WeightsLayer], created: str | None) -> bytes:
    """The runtime's config with the new diff_ids and history, no entrypoint or health check (it is not a
    server) and the copy as its command (``docker run -v DIR:/weights IMAGE`` copies and checks)."""
    doc = json.loads(base.config)
    rootfs = dict(doc.get("rootfs") or {"type": "layers"})
    diff_ids = list(rootfs.get("diff_ids") or [])
    if len(diff_ids) != len(base.layers):
        raise VerificationError(f"{base.source}: its config lists {len(diff_ids)} diff_ids for "
                                f"{len(base.layers)} layers")
    rootfs["diff_ids"] = diff_ids + [ly.descriptor.digest for ly in layers]  # uncompressed: diff_id == digest
    doc["rootfs"] = rootfs
    stamp = {"created": created} if created else {}
    doc["history"] = [*(doc.get("history") or []), *(
        {**stamp, "created_by": f"airpack: the model file {ly.file.path} at /{IMAGE_ROOT}/{ly.file.path}",
         "comment": f"sha256:{ly.file.sha256}"} for ly in layers)]
    inner = {k: v for k, v in dict(doc.get("config") or {}).items() if k not in ("Entrypoint", "Healthcheck")}
    inner["Cmd"] = list(init_copy_command([(ly.file.path, ly.file.sha256) for ly in layers]))
    doc["config"] = inner
    return _canonical(doc)


def build_weights_image(base: BaseImage, files: Sequence[ModelFile], layers: Sequence[Descriptor], name: str,
                        version: str, created: str | None = None) -> WeightsImage:
    """The image for ``files`` (sorted by path; ``layers`` from :func:`layer_descriptors`, in the same order as
    ``files``) on ``base``: the same inputs give the same bytes."""
    if len(files) != len(layers) or not files:
        raise ValueError("a weights image needs one layer descriptor per model file, and at least one file")
    added = tuple(sorted((WeightsLayer(d, f) for f, d in zip(files, layers, strict=True)),
                         key=lambda ly: ly.file.path.encode()))
    config = _config(base, added, created)
    config_desc = Descriptor(OCI_CONFIG, f"sha256:{sha256_bytes(config)}", len(config))
    base_layers = [dict(d) for d in json.loads(base.manifest)["layers"]]  # kept as they are (urls and all)
    for d in base_layers:
        if d.get("mediaType") == DOCKER_LAYER:  # the same gzip tar, named in the OCI schema this manifest uses
            d["mediaType"] = OCI_LAYER_GZIP
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc.to_dict(),
        "layers": [*base_layers, *(ly.descriptor.to_dict() for ly in added)],
        "annotations": {"org.opencontainers.image.title": f"{name} weights",
                        "org.opencontainers.image.version": version,
                        "org.opencontainers.image.base.digest": base.digest,
                        "org.opencontainers.image.base.name": base.source.split("@", 1)[0]},
    })
    return WeightsImage(config, config_desc, manifest,
                        Descriptor(OCI_MANIFEST, f"sha256:{sha256_bytes(manifest)}", len(manifest)), base, added)


def weights_repository(prefix: str, name: str) -> str:
    """The weights image goes beside the model artifact: the same repository (``PREFIX/<name>``)."""
    return model_repository(prefix, name)


def weights_tag(version: str) -> str:
    """``<version as a tag>-weights``."""
    return site_tag(f"{site_tag(version)}-weights")


def weights_reference(registry: str, name: str, image: WeightsImage) -> str:
    """``HOST[:PORT]/PREFIX/<name>@sha256:…``: where ``airpack push --weights-image`` puts ``image`` (what the
    Kubernetes manifests name, computed without pushing)."""
    host, prefix = split_site_registry(registry)
    return f"{host}/{weights_repository(prefix, name)}@{image.manifest_descriptor.digest}"


# ---- the init container's copy ---------------------------------------------------------------------------
# POSIX sh (busybox ash, dash, bash): mkdir, tee, sha256sum, mv, rm, printf. Arguments: SRC DST (PATH SHA256)...
# A file already at DST with the right sum stays (a reused volume); otherwise it is copied through tee into
# DST/.airpack-partial while sha256sum hashes the same stream (each byte read once), then renamed into place
# only when the sum matches. A failed read or write marks the output (FAILED on fd 3) instead of relying on
# pipefail, which dash lacks.
INIT_COPY_SCRIPT = r"""set -u
src=$1 dst=$2
shift 2
part="$dst/.airpack-partial"
fail() { rm -f "$part"; printf 'airpack init-copy: %s\n' "$1" >&2; exit 1; }
mkdir -p "$dst" || fail "cannot create $dst"
copied=0 kept=0
while [ "$#" -ge 2 ]; do
  p=$1 want=$2
  shift 2
  if [ -f "$dst/$p" ]; then
    got=$(sha256sum < "$dst/$p") || got=
    if [ "${got%% *}" = "$want" ]; then kept=$((kept + 1)); continue; fi
    rm -f "$dst/$p" || fail "$p: cannot remove the stale copy"
  fi
  case $p in */*) mkdir -p "$dst/${p%/*}" || fail "$p: cannot create its folder" ;; esac
  out=$( { { tee "$part" < "$src/$p" || echo FAILED >&3; } | sha256sum; } 3>&1 )
  case $out in FAILED*) fail "$p: cannot copy it from $src to $dst" ;; esac
  got=${out%% *}
  [ "$got" = "$want" ] || fail "$p: sha256 $got is not the signed $want"
  mv -f "$part" "$dst/$p" || fail "$p: cannot move it into place"
  copied=$((copied + 1))
done
printf 'airpack init-copy: %s copied, %s already in place, in %s\n' "$copied" "$kept" "$dst"
"""


def init_copy_command(files: Sequence[tuple[str, str]], src: str = SRC, dst: str = DST) -> tuple[str, ...]:
    """The init container's argv: ``("sh", "-c", SCRIPT, "sh", src, dst, path1, sha1, ...)``.

    ``files`` are ``(path relative to the model folder, sha256 hex)``; the paths are passed as arguments, never
    written into the script, so any name is copied literally. Exit 1 with one line naming the file when a
    copied file's sum is not the expected one (nothing is left under its name).
    """
    argv = ["sh", "-c", INIT_COPY_SCRIPT, "sh", src, dst]
    for path, sha in files:
        check_path(path)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise UsageError(f"model file {path!r}: sha256 {sha!r} is not 64 lowercase hex digits")
        argv += [path, sha]
    for where in (src, dst):
        if not where or any(ord(c) < 32 or ord(c) == 127 for c in where):
            raise UsageError(f"init-copy folder {where!r}: empty or has a control character")
    return tuple(argv)
