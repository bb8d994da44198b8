"""What a benchmark prints, kept so that ``--save PREFIX`` writes exactly what was shown
(``PREFIX.txt``) next to the measurements behind it (``PREFIX.json``)."""

from __future__ import annotations

import json
from pathlib import Path


class Transcript:
    """``say`` prints a line and keeps it; ``save`` writes the kept lines and the data."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)

    def save(self, prefix: str | Path, data: dict) -> None:
        save_outputs(prefix, self.lines, data)


def save_outputs(prefix: str | Path, lines: list[str], data: dict) -> None:
    """``PREFIX.txt`` (the printed lines) and ``PREFIX.json`` (the data), creating the folder; paths
    in both are made relative to the repository (committed files name no folder of the machine)."""
    from mathkit.reporting.paths import anchors, portable, strip_prefixes

    pairs = anchors()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.txt").write_text("\n".join(strip_prefixes(line, pairs) for line in lines) + "\n")
    Path(f"{prefix}.json").write_text(json.dumps(portable(data, pairs), indent=2, default=str) + "\n")
