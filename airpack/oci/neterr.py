"""One short cause for a failed network request: ``connection refused``, ``host name not resolved``,
``timed out``, instead of the several hundred characters of urllib3's retry text."""

from __future__ import annotations

import socket

_BY_CLASS = {  # requests / urllib3 classes by name, when no OS error is found underneath
    "ConnectTimeout": "connection timed out",
    "ConnectTimeoutError": "connection timed out",
    "ReadTimeout": "no answer in time",
    "ReadTimeoutError": "no answer in time",
    "NameResolutionError": "host name not resolved",
    "ProxyError": "the proxy refused or failed",
    "SSLError": "TLS failed",
    "ChunkedEncodingError": "connection broken mid-answer",
    "ProtocolError": "connection broken mid-answer",
    "TooManyRedirects": "too many redirects",
    "InvalidURL": "invalid address",
}


def _os_cause(exc: OSError) -> str | None:
    if isinstance(exc, socket.gaierror):
        return "host name not resolved"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return None


def short_cause(exc: BaseException) -> str:
    """The deepest cause that says something to an operator (an OS error first, else the library's class)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    named: str | None = None
    while stack:
        e = stack.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and type(e).__module__ in ("builtins", "socket"):  # not requests' own OSErrors
            found = _os_cause(e)
            if found:
                return found
        named = named or _BY_CLASS.get(type(e).__name__)
        nested = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        stack.extend(n for n in nested if isinstance(n, BaseException))
    return named or type(exc).__name__
