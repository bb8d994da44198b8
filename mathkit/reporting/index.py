"""``reports/index.md``: one row per notebook with its headline numbers, where it ran, and links;
and the README's block of headline numbers, written from the same results.json files."""

from __future__ import annotations

import json
from pathlib import Path

from mathkit.reporting.conclusion import accuracy_text, percent
from mathkit.reporting.provenance import plural


FRACTION_WORDS = ("accuracy", "exact_match", "rate", "fraction")


def format_value(value, key: str = "") -> str:
    """One headline number as the index shows it.

    An accuracy dict reads ``97.10% [95.20, 98.30] (n=500)`` (a bound below 100% never shows as
    100.00); a fraction named like an accuracy (``token_accuracy: 0.999984``) as a percentage;
    other floats with two decimals (three significant digits below 1); integers with separators.
    """
    if isinstance(value, dict) and "n_seeds" in value:  # a mean over seeds, not one model's count
        return seed_mean_text(value)
    if isinstance(value, dict) and "value" in value:
        v, n, ci = value["value"], value.get("n"), value.get("ci95")
        text = f"{percent(v)}%" if isinstance(v, float) and 0 <= v <= 1 else format_value(v)
        if ci:
            text += f" [{percent(ci[0])}, {percent(ci[1])}]"
        if n is not None:
            text += f" (n={n:,})"
        return text
    if isinstance(value, dict):  # e.g. {"base": {...}, "tuned": {...}}: one entry per arm
        return ", ".join(f"{k} {format_value(v, key)}" for k, v in value.items())
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        if key.startswith("vs_baseline"):  # differences of accuracies, per seed
            return "[" + ", ".join(f"{100 * v:+.1f}" for v in value) + "] pp"
        return "[" + ", ".join(format_value(v, key) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if 0 <= value <= 1 and any(w in key for w in FRACTION_WORDS):
            return f"{percent(value)}%"
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


def seed_mean_text(value: dict) -> str:
    """``80.34% (mean of 3 seeds, 65.47-97.84; n=139 each)``: a seed mean with its range."""
    text = f"{percent(value['value'])}% (mean of {value['n_seeds']} seeds"
    if value.get("min") is not None and value.get("max") is not None:
        text += f", {percent(value['min'])}-{percent(value['max'])}"
    return text + (f"; n={value['n']:,} each)" if value.get("n") is not None else ")")


def where_it_ran(results: dict) -> str:
    """``local: CPU (Intel Xeon ...), 1 thread`` or ``kaggle: Tesla T4``, from provenance or runtime."""
    prov = results.get("provenance")
    if prov:
        machine = prov.get("machine", {})
        device = machine.get("gpu") or f"CPU ({machine.get('cpu', '?')}), {plural(prov.get('threads', 0), 'thread')}"
        git = prov.get("git", {})
        commit = f", commit {git['commit'][:7]}{' + changes' if git.get('dirty') else ''}" if git.get("commit") else ""
        return f"{machine.get('platform', '?')}: {device}{commit}"
    runtime = results.get("runtime", {})
    threads = runtime.get("cpu_threads")
    device = runtime.get("gpu_name") or ("CPU, " + (plural(threads, "thread") if threads else "? threads"))
    finished = str(results.get("finished_utc", ""))[:10]
    return (f"{runtime.get('platform', '?')}: {device}; an earlier version of mathkit"
            f"{' (' + finished + ')' if finished else ''}, without provenance")


def index_row(reports_dir: Path, name: str, title: str) -> str:
    folder = reports_dir / name
    results_path = folder / "results.json"
    if not results_path.is_file():
        return f"| {title} (`{name}`) | no results yet | | |"
    results = json.loads(results_path.read_text())
    headline = "<br>".join(f"{k}: {format_value(v, k)}" for k, v in results.get("headline", {}).items())
    links = [f"[report]({name}.html)", f"[notebook]({name}.ipynb)", f"[results]({name}/results.json)"]
    links += [f"[{p.stem}]({name}/{p.name})" for p in sorted(folder.glob("*.png"))]
    return (f"| {title} (`{name}`) | {headline} | {where_it_ran(results)} | "
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
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / "index.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


README_START = "<!-- headline numbers: written by `python -m mathkit index` from reports/*/results.json -->"
README_END = "<!-- end of headline numbers -->"


def headline_text(key: str, value) -> str:
    """``key: 2/100 = 2.00% [0.55, 7.00]`` for an accuracy, else the index's formatting."""
    def text(v: dict) -> str:
        return seed_mean_text(v) if "n_seeds" in v else accuracy_text(v)

    if isinstance(value, dict) and "value" in value and value.get("n") is not None:
        return f"{key}: {text(value)}"
    if isinstance(value, dict) and value and all(isinstance(v, dict) and "value" in v for v in value.values()):
        return f"{key}: " + ", ".join(f"{arm} {text(v)}" for arm, v in value.items())
    return f"{key}: {format_value(value, key)}"


def readme_block(reports_dir: Path, specs) -> str:
    """The README's headline-numbers block: one bullet per notebook that has results."""
    lines = [README_START]
    for spec in specs:
        path = reports_dir / spec.name / "results.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        numbers = "; ".join(headline_text(k, v) for k, v in results.get("headline", {}).items())
        lines.append(f"- `{spec.name}` ({where_it_ran(results)}): {numbers}")
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(readme: Path, reports_dir: Path, specs) -> bool:
    """Rewrite the block between the README's headline markers; False when it has no markers."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    new = text[:start] + readme_block(reports_dir, specs) + text[end + len(README_END):]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True
