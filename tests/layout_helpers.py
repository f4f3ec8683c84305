"""OCI image layouts made in Python for tests: gzip layers of tar members, images written into a layout."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from airpack.lock import LockedImage
from airpack.oci.layout import OciLayout, ref_name
from airpack.oci.manifest import OCI_MANIFEST, Descriptor


def make_layer(name: str, data: bytes) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


def make_image(layout: OciLayout, ref: str, layers: list[bytes]) -> LockedImage:
    blobs = [layout.put_bytes(b) for b in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [b.digest for b in blobs]}}).encode()
    cfg = layout.put_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg.digest,
                   "size": cfg.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": b.digest,
                    "size": b.size} for b in blobs]}).encode()
    m = layout.put_bytes(manifest)
    locked = LockedImage(ref=ref, repository=ref.rsplit(":", 1)[0], digest=m.digest, config_digest=cfg.digest,
                         platform="linux/amd64", tag=ref.rsplit(":", 1)[1])
    layout.add_manifest(Descriptor(OCI_MANIFEST, m.digest, m.size), ref_name(locked), cfg.digest)
    return locked
