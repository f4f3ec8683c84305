"""Packing a bundle's files onto volumes of a fixed size, first fit, largest first, so that no medium is wasted.

A file goes whole onto the first volume with room for it. A file larger than any volume's room is cut, only
on its chunk boundaries (each piece then proves itself against the signed chunk chain): whole chunks go onto
the first volumes that can take one, and the rest onto the first volume with room for it. Pure arithmetic on
sizes; :func:`airpack.volumes.plan_volumes` turns the result into volume files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airpack.errors import UsageError
from airpack.units import format_size


@dataclass(frozen=True)
class Item:
    """A file to place: ``chunk`` is its chunk size, 0 when it cannot be cut."""

    path: str
    size: int
    chunk: int = 0


@dataclass(frozen=True)
class Cut:
    """A piece of ``path`` on one volume; ``part`` is 0 for the whole file, else 1, 2, … in file order."""

    path: str
    offset: int
    length: int
    part: int = 0


def smallest_room(items: Iterable[Item], piece_cap: int | None) -> int | None:
    """The least room a volume needs to take every item (one chunk of a file that can be cut), or None when
    ``piece_cap`` (the largest file on the media) makes it impossible at any size."""
    need = 1
    for it in items:
        least = min(it.size, it.chunk) if it.chunk else it.size
        if piece_cap is not None and least > piece_cap:
            return None
        need = max(need, least)
    return need


def pack(items: Iterable[Item], capacity: int, reserve: int, max_file: int | None = None, *,
         pinned: Iterable[Item] = ()) -> list[list[Cut]]:
    """The items placed on as few volumes of ``capacity`` bytes (``reserve`` of each kept for the signed root
    and the volume file) as first fit, largest first, finds; each volume's pieces in path and offset order.
    ``pinned`` items go whole onto volume 1 before any other (``tool/``: the first medium alone bootstraps
    airpack on the far side). Raises :class:`UsageError` naming the smallest ``--size`` that works when
    ``capacity`` is too small."""
    todo = sorted(items, key=lambda i: (-i.size, i.path.encode()))
    first_vol = sorted(pinned, key=lambda i: i.path.encode())
    room = capacity - reserve
    piece_cap = max_file or capacity
    if room <= 0:
        raise _too_small(None, capacity, reserve, max_file, [*first_vol, *todo])
    bins: list[list[Cut]] = [[Cut(i.path, 0, i.size) for i in first_vol]] if first_vol else []
    free: list[int] = [room - sum(i.size for i in first_vol)] if first_vol else []
    if first_vol and (free[0] < 0 or max(i.size for i in first_vol) > piece_cap):
        need = reserve + sum(i.size for i in first_vol)
        larger = ", a larger --max-file" if max(i.size for i in first_vol) > piece_cap else ""
        raise UsageError(f"volume 1 must hold tool/ whole ({format_size(need - reserve)}), and a volume of "
                         f"{format_size(capacity)} cannot",
                         hint=f"a --size of at least {format_size(need, up=True)}{larger}, or build with --no-tool")

    def first(need: int) -> int:
        for k, f in enumerate(free):
            if f >= need:
                return k
        bins.append([])
        free.append(room)
        return len(bins) - 1

    for it in todo:
        if it.size <= min(room, piece_cap):
            k = first(it.size)
            bins[k].append(Cut(it.path, 0, it.size))
            free[k] -= it.size
            continue
        if not it.chunk or min(room, piece_cap) < it.chunk:
            raise _too_small(it, capacity, reserve, max_file, todo)
        offset, part = 0, 0
        while offset < it.size:
            left = it.size - offset
            part += 1
            if left <= min(room, piece_cap):  # the rest fits whole somewhere
                k = first(left)
                bins[k].append(Cut(it.path, offset, left, part))
                free[k] -= left
                break
            k = first(it.chunk)  # the first volume that takes at least one whole chunk
            take = min(min(free[k], piece_cap) // it.chunk * it.chunk, left)
            bins[k].append(Cut(it.path, offset, take, part))
            free[k] -= take
            offset += take
    return [sorted(b, key=lambda c: (c.path.encode(), c.offset)) for b in bins] or [[]]


def _too_small(it: Item | None, capacity: int, reserve: int, max_file: int | None, items: list[Item]
               ) -> UsageError:
    need = smallest_room(items, max_file)
    if it is None:
        what = f"a volume of {format_size(capacity)} cannot even hold the bundle's signed root ({format_size(reserve)})"
    else:
        how = f"cut only at its {format_size(it.chunk)} chunk boundaries" if it.chunk else "it cannot be cut"
        what = f"{it.path} ({format_size(it.size)}) does not fit in a volume of {format_size(capacity)}"
        if max_file is not None and max_file < capacity:
            what += f" with --max-file {format_size(max_file)}"
        what += f": {how}"
    if need is None:
        return UsageError(what, hint="--max-file is smaller than one piece of it: raise --max-file")
    return UsageError(what, hint=f"the smallest --size that works is {format_size(reserve + need, up=True)}")
