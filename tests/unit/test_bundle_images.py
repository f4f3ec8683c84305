"""Lock-time findings about images (no registry: the locked records are built here)."""

from __future__ import annotations

from airpack.bundle_images import image_checks
from airpack.lock import LockedImage


def _image(ref: str, *media_types: str) -> LockedImage:
    return LockedImage(ref=ref, repository=ref.rsplit(":", 1)[0], digest="sha256:" + "a" * 64,
                       config_digest="sha256:" + "b" * 64, platform="linux/amd64",
                       extra={"layerMediaTypes": list(media_types)})


def test_zstd_layers_warn_at_lock_and_gzip_layers_do_not() -> None:
    gzip = _image("r.example/a:1", "application/vnd.oci.image.layer.v1.tar+gzip")
    zstd = _image("r.example/b:1", "application/vnd.oci.image.layer.v1.tar+gzip",
                  "application/vnd.oci.image.layer.v1.tar+zstd")
    docker_zstd = _image("r.example/c:1", "application/vnd.docker.image.rootfs.diff.tar.zstd")
    assert image_checks((gzip,)) == ()
    checks = image_checks((gzip, zstd, docker_zstd))
    assert [c["status"] for c in checks] == ["warn", "warn"]
    assert "r.example/b:1" in checks[0]["message"] and "Docker Engine 23+" in checks[0]["message"]
    assert "tar+gzip" not in checks[0]["message"]  # only the layers an old engine refuses are named
    assert "r.example/c:1" in checks[1]["message"]
    assert image_checks((_image("r.example/d:1"),)) == ()  # an engine image records no media types here
