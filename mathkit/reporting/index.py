"""``reports/index.md``: one row per notebook with its headline numbers, where it ran, and links."""

from __future__ import annotations

import json
from pathlib import Path


def format_value(value) -> str:
    """An accuracy dict as ``97.10% [95.20, 98.30] (n=500)``; other numbers with 6 significant
    digits. Two decimals, so that 99.98% is never shown as 100.0%."""
    if isinstance(value, dict) and "value" in value:
        v, n, ci = value["value"], value.get("n"), value.get("ci95")
        text = f"{100 * v:.2f}%" if isinstance(v, float) and 0 <= v <= 1 else f"{v}"
        if ci:
            text += f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
        if n is not None:
            text += f" (n={n})"
        return text
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def where_it_ran(runtime: dict) -> str:
    device = runtime.get("gpu_name") or f"CPU, {runtime.get('cpu_threads', '?')} threads"
    return f"{runtime.get('platform', '?')}: {device}"


def index_row(reports_dir: Path, name: str, title: str) -> str:
    folder = reports_dir / name
    results_path = folder / "results.json"
    if not results_path.is_file():
        return f"| {title} (`{name}`) | no results yet | | |"
    results = json.loads(results_path.read_text())
    headline = "<br>".join(f"{k}: {format_value(v)}" for k, v in results.get("headline", {}).items())
    links = [f"[report]({name}.html)", f"[notebook]({name}.ipynb)", f"[results]({name}/results.json)"]
    links += [f"[{p.stem}]({name}/{p.name})" for p in sorted(folder.glob("*.png"))]
    return (f"| {title} (`{name}`) | {headline} | {where_it_ran(results.get('runtime', {}))} | "
            f"{' '.join(links)} |")


def write_index(reports_dir: Path, specs) -> Path:
    """Write ``reports_dir/index.md`` for the given notebook specs (name, title)."""
    lines = [
        "# mathkit reports",
        "",
        "Written by `python -m mathkit run all` (or `python -m mathkit index` after single runs).",
        "Every number comes from the executed notebook beside it; accuracies show the 95% Wilson",
        "interval and n.",
        "",
        "| notebook | headline | where it ran | files |",
        "|---|---|---|---|",
    ]
    lines += [index_row(reports_dir, s.name, s.title) for s in specs]
    path = reports_dir / "index.md"
    path.write_text("\n".join(lines) + "\n")
    return path
