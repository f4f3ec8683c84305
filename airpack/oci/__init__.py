"""Container images: lock (resolve), build (fetch into an OCI layout), load into an engine, push to a registry.

Daemonless OCI distribution client on ``requests``; the docker SDK only where an engine is involved.
"""

from __future__ import annotations

from airpack.oci.auth import RegistryOptions
from airpack.oci.fetch import FetchedImage, fetch_image
from airpack.oci.layout import OciLayout, ref_name
from airpack.oci.push import push_layout
from airpack.oci.reference import Platform, Reference, parse_platform, parse_reference
from airpack.oci.resolve import resolve_image

__all__ = [
    "FetchedImage",
    "OciLayout",
    "Platform",
    "Reference",
    "RegistryOptions",
    "fetch_image",
    "parse_platform",
    "parse_reference",
    "push_layout",
    "ref_name",
    "resolve_image",
]
