"""How library stages report progress without printing: the CLI passes a reporter, the default is silent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Advance = Callable[[int], None]
Event = Callable[[str], None]  # one line of status ("starting …", "waiting for health"): the CLI shows it, or nothing


class Reporter(Protocol):
    """Creates one progress task; the returned callable advances it by a number of bytes."""

    def task(self, description: str, total: int) -> Advance: ...

    def done(self, advance: Advance) -> None: ...


class Silent:
    """The default reporter: reports nothing."""

    def task(self, description: str, total: int) -> Advance:
        return _noop

    def done(self, advance: Advance) -> None:
        return None


def _noop(_: int) -> None:
    return None
