"""Container images: lock (resolve), build (``oci.fetch``: into an OCI layout), load into an engine, push to a registry.

Daemonless OCI distribution client on ``requests``; the docker SDK only where an engine is involved
(``oci.engine_save`` at build time, ``oci.engine_load`` on the far side). The build-side fetch is not imported
here, so loading or pushing a verified bundle never imports it.
"""

from __future__ import annotations

from airpack.oci.auth import RegistryOptions
from airpack.oci.layout import OciLayout, ref_name
from airpack.oci.push import push_layout
from airpack.oci.reference import Platform, Reference, parse_platform, parse_reference
from airpack.oci.resolve import resolve_image

__all__ = [
    "OciLayout",
    "Platform",
    "Reference",
    "RegistryOptions",
    "parse_platform",
    "parse_reference",
    "push_layout",
    "ref_name",
    "resolve_image",
]
