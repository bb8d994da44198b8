"""Paths in committed files, relative to the repository: no folder of the machine that ran them.

A report written on one machine is read on another, so ``/work/main/reports/00/records/x.jsonl``
is written as ``reports/00/records/x.jsonl``. Anchors are the folders whose absolute prefix is
dropped: the repository, the folder that holds the reports (a temporary one in tests, Kaggle's
working folder there) and the home folder (written ``~/``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from mathkit.env import KAGGLE_WORKING, detect_platform, repo_root


def slug(text: str | Path) -> str:
    """A file-name-safe short name of a model name, hub id or folder: its last path part with
    anything but letters, digits, ``.``, ``_`` and ``-`` turned into ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(text).rstrip("/")).name or str(text)).strip("_")


def anchors(*folders: str | Path | None) -> list[tuple[str, str]]:
    """``(absolute prefix, replacement)`` pairs, longest prefix first.

    ``folders`` are folders whose *parent* is the base of the relative form (pass the reports
    folder: its children are written ``reports/...``). The repository root and, on Kaggle, the
    working folder are always included.
    """
    pairs: dict[str, str] = {}
    home = Path.home()
    if str(home) not in ("/", ""):
        pairs[str(home)] = "~"
    if detect_platform() == "kaggle":
        pairs[str(KAGGLE_WORKING)] = ""
    for folder in folders:
        if folder is not None:
            parent = Path(folder).resolve().parent
            if str(parent) != "/":
                pairs[str(parent)] = ""
    root = repo_root()
    if root is not None:
        pairs[str(root)] = ""
    return sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True)


def _replacement(label: str, rest: str) -> str:
    if label:
        return label + rest              # "~" + "/x" -> "~/x"
    return rest.lstrip("/") or "."


def portable_path(path: str | Path, pairs: list[tuple[str, str]]) -> str:
    """``path`` relative to the first anchor it lies under; elsewhere only its last part survives."""
    text = str(path)
    if not text.startswith("/"):
        return text
    for prefix, label in pairs:
        if text == prefix or text.startswith(prefix + "/"):
            return _replacement(label, text[len(prefix):])
    return ".../" + Path(text).name


def strip_prefixes(text: str, pairs: list[tuple[str, str]]) -> str:
    """Replace every anchor prefix inside free text (tracebacks, printed paths) by its relative form."""
    def relative(match: re.Match, label: str) -> str:
        if match.group(1) == "/":
            return label + "/" if label else ""
        return label or "."

    for prefix, label in pairs:
        pattern = re.escape(prefix) + r"(/|(?![\w-]|\.\w))"
        text = re.sub(pattern, lambda m, lab=label: relative(m, lab), text)
    return text


def portable(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """``value`` (nested dicts/lists/strings/paths) with every absolute path made relative."""
    if isinstance(value, dict):
        return {k: portable(v, pairs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, pairs) for v in value]
    if isinstance(value, Path):
        return portable_path(value, pairs)
    if isinstance(value, str) and value.startswith("/") and not any(c.isspace() for c in value):
        return portable_path(value, pairs)
    if isinstance(value, str) and "/" in value:
        return strip_prefixes(value, pairs)
    return value


ABSOLUTE_PATH_PATTERN = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp|Users|private|var/folders)/")


def absolute_paths_in(text: str) -> list[str]:
    """Absolute paths of a machine found in ``text`` (a few characters of context each)."""
    return [text[max(0, m.start() - 20): m.end() + 40] for m in ABSOLUTE_PATH_PATTERN.finditer(text)]


def find_absolute_paths(texts: Iterable[str]) -> list[str]:
    return [hit for text in texts for hit in absolute_paths_in(text)]
