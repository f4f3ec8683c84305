"""Text that came from a bundle, a volume, a spec or a lock is shown escaped: never raw on a terminal.

A file name or an unverified manifest field can hold escape sequences (``ESC [ 2K`` then a green "OK"), a
carriage return, C1 controls (``U+009B`` is a CSI on some terminals), bidi overrides (``U+202E``) or zero-width
characters. ``escape`` replaces every character that is not printable (Unicode categories Cc, Cf, Cs, Co, Cn,
Zl, Zp and every space but U+0020) with a visible ``\\xHH``/``\\uHHHH``/``\\UHHHHHHHH`` form. Printable text,
backslashes included, passes unchanged, so escaping twice is the same as escaping once.
"""

from __future__ import annotations

from typing import Any


def _one(c: str) -> str:
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def escape(text: str) -> str:
    """``text`` with every control and non-printable character made visible (idempotent)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _one(c) for c in text)


def escape_tree(value: Any) -> Any:
    """``escape`` every string (keys included) in a JSON-like tree of dicts, lists and tuples."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {escape_tree(k): escape_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_tree(v) for v in value]
    return value
