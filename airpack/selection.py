"""Which model files go into a bundle: include/exclude globs and the model-content safety rules.

Shared by every model source (local folder, Hugging Face repo, Hugging Face cache) so a file is selected the
same way wherever it comes from, and the lock records what was left out and why.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Pickle can execute arbitrary code when loaded; Python files run with trust_remote_code. Both are left out
# unless the spec opts in (model.allowPickle / model.allowCode).
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")
CODE_PATTERNS = ("*.py",)
# Never model content: VCS metadata and editor/OS litter.
ALWAYS_EXCLUDED = (".git/*", ".gitattributes", ".cache/*", "*/.cache/*", ".DS_Store", "*/.DS_Store")


@dataclass(frozen=True)
class Excluded:
    """A file that was present at the source but not selected, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Selection:
    """Outcome of applying the rules to a list of source paths."""

    selected: tuple[str, ...]
    excluded: tuple[Excluded, ...]


def _match(path: str, patterns: Iterable[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def select_files(
    paths: Iterable[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    allow_pickle: bool = False,
    allow_code: bool = False,
) -> Selection:
    """Apply include globs (all when empty), then exclude globs, then the safety rules.

    Globs match the whole relative path or the file name alone (``*.gguf`` matches ``sub/x.gguf``).
    """
    selected: list[str] = []
    excluded: list[Excluded] = []
    for path in sorted(set(paths)):
        if _match(path, ALWAYS_EXCLUDED):
            continue
        if include and not _match(path, include):
            excluded.append(Excluded(path, "not matched by model.files"))
        elif exclude and _match(path, exclude):
            excluded.append(Excluded(path, "matched by model.exclude"))
        elif not allow_pickle and _match(path, PICKLE_PATTERNS):
            excluded.append(Excluded(path, "pickle weights can run code when loaded (set model.allowPickle)"))
        elif not allow_code and _match(path, CODE_PATTERNS):
            excluded.append(Excluded(path, "Python code in a model repo runs with trust_remote_code (set model.allowCode)"))
        else:
            selected.append(path)
    return Selection(tuple(selected), tuple(excluded))
