"""Where the CLI's words go, as docker, git and pip do it: a command's **result** on stdout (so ``airpack inspect
bundle > f`` and ``airpack plan … | less`` capture it), **progress and diagnostics** on stderr (bars on a terminal,
one plain line every few seconds otherwise), errors on stderr as one line, and ``--json`` on stdout alone.
Errors become exit codes here, in :func:`run`, and nowhere else.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from airpack.errors import EXIT_ERROR, EXIT_OK, AirpackError, VerificationError
from airpack.progress import Advance, Reporter, Silent
from airpack.textsafe import escape
from airpack.units import format_size

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")
Event = Callable[[str], None]


def result(text: str) -> None:
    """Print (part of) a command's result: stdout, literally."""
    out.print(text, markup=False)


def note(text: str) -> None:
    """Print a diagnostic or a status line: stderr, literally."""
    err.print(text, markup=False)


class Verdict(Exception):  # a result that carries a failing verdict, not an error of its own
    """A result that is printed as usual and then fails with ``error`` (``plan`` that does not fit, ``doctor``
    with a failed check): text shows both, ``--json`` gives the data with ``ok: false``."""

    def __init__(self, data: Any, error: AirpackError) -> None:
        super().__init__(str(error))
        self.data = data
        self.error = error


def emit_json(command: str, exit_code: int, data: Any, problems: list[dict[str, str]] | None = None,
              error: str | None = None) -> None:
    doc = {"airpackResultVersion": 1, "command": command, "ok": exit_code == EXIT_OK, "exitCode": exit_code,
           "data": data, "problems": problems or [], "error": error}
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _fail(command: str, as_json: bool, exc: AirpackError, data: Any = None) -> None:
    problems = [p.to_dict() for p in exc.problems] if isinstance(exc, VerificationError) else []  # type: ignore[attr-defined]
    if as_json:
        emit_json(command, exc.exit_code, data, problems, str(exc))
        return
    for p in problems[:50]:
        note(f"  {p['kind']:<18} {p['path']}  ({p['detail']})")
    if len(problems) > 50:
        note(f"  … and {len(problems) - 50} more (use --json for all)")
    err.print(f"error: {exc}", markup=False, style="bold red")


def run(command: str, as_json: bool, fn: Callable[[], T], render: Callable[[T], None]) -> int:
    """Call ``fn``; print its result or its error; return the exit code. The one error→exit mapping."""
    try:
        value = fn()
    except Verdict as v:
        if not as_json:
            render(v.data)
        _fail(command, as_json, v.error, v.data)
        return v.error.exit_code
    except AirpackError as exc:
        _fail(command, as_json, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    except OSError as exc:  # disk full, media pulled out: one line, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        msg = escape(f"{where}{exc.strerror or exc}")  # a file name from a bundle or volume may hold controls
        if as_json:
            emit_json(command, EXIT_ERROR, None, error=msg)
        else:
            err.print(f"error: {msg}", markup=False, style="bold red")
        return EXIT_ERROR
    if as_json:
        emit_json(command, EXIT_OK, value)
    else:
        render(value)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ progress

class _RichReporter:
    """Progress bars on stderr when it is a terminal."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def task(self, description: str, total: int) -> Advance:
        task_id = self._progress.add_task(description, total=total)
        return lambda n: self._progress.advance(task_id, n)

    def done(self, advance: Advance) -> None:
        return None


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Task:
    """One task's running count (mutable, behind the reporter's lock)."""

    __slots__ = ("description", "done", "last", "start", "total")

    def __init__(self, description: str, total: int, now: float) -> None:
        self.description, self.total, self.done, self.start, self.last = description, total, 0, now, now

    def line(self, now: float, *, final: bool) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        if final:
            return f"{self.description}: {format_size(self.done)} done in {_duration(elapsed)} ({format_size(rate)}/s)"
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        eta = _duration((self.total - self.done) / rate) if rate > 0 and self.total >= self.done else "?"
        return (f"{self.description}: {format_size(self.done)} of {format_size(self.total)}{pct}, "
                f"{format_size(rate)}/s, ETA {eta}")


class PlainReporter:
    """For CI logs and ``ssh … | tee``: one plain line per task every ``interval`` seconds (bytes, rate, ETA),
    and one when a task that took that long is done. Thread-safe: verify advances from several threads."""

    def __init__(self, write: Event, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._write, self._interval, self._clock = write, interval, clock
        self._lock = threading.Lock()
        self._tasks: dict[int, _Task] = {}

    def task(self, description: str, total: int) -> Advance:
        state = _Task(description, total, self._clock())

        def advance(n: int) -> None:
            with self._lock:
                state.done += n
                now = self._clock()
                if now - state.last < self._interval:
                    return
                state.last = now
                line = state.line(now, final=False)
            self._write(line)

        self._tasks[id(advance)] = state
        return advance

    def done(self, advance: Advance) -> None:
        state = self._tasks.pop(id(advance), None)
        now = self._clock()
        if state is not None and state.done and now - state.start >= self._interval:  # long work: say it ended
            self._write(state.line(now, final=True))


def progress_interval() -> float:
    """Seconds between plain progress lines (``AIRPACK_PROGRESS_INTERVAL``; default 5)."""
    try:
        return max(0.0, float(os.environ.get("AIRPACK_PROGRESS_INTERVAL", "5")))
    except ValueError:
        return 5.0


def _bars() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True)


@contextmanager
def reporter(enabled: bool) -> Iterator[Reporter]:
    """Bars on a terminal, plain lines otherwise; nothing when disabled (``--json``)."""
    if enabled and err.is_terminal:
        with _bars() as progress:
            yield _RichReporter(progress)
        return
    with live(enabled) as (rep, _):
        yield rep


@contextmanager
def live(enabled: bool) -> Iterator[tuple[Reporter, Event]]:
    """Byte progress plus one status line for phases (health waits): a live display on a terminal, plain
    lines on stderr otherwise."""
    if not enabled:
        yield Silent(), lambda _: None
        return
    if not err.is_terminal:
        yield PlainReporter(note, progress_interval()), note
        return
    with _bars() as progress:
        line = progress.add_task("", total=None)
        yield _RichReporter(progress), lambda msg: progress.update(line, description=msg)


def print_checks(checks: list[dict[str, Any]]) -> None:
    """Doctor's checks: the result of ``doctor``, on stdout."""
    style = {"pass": "green", "warn": "yellow", "fail": "bold red"}
    for c in checks:
        out.print(f"{c['status'].upper():<4} ", style=style[c["status"]], end="", markup=False)
        out.print(f"{c['name']:<14} {c['detail']}", markup=False)
        if c["fix"] and c["status"] != "pass":
            out.print(f"     fix: {c['fix']}", markup=False)
