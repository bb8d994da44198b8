"""reports/index.md: one row per notebook with headline numbers, where it ran, and links."""

import json
from pathlib import Path

from mathkit.cli.notebook_registry import NotebookSpec
from mathkit.reporting.index import format_value, headline_text, write_index


def test_format_value():
    assert format_value({"value": 0.5, "n": 100, "ci95": [0.4, 0.6]}) == "50.00% [40.00, 60.00] (n=100)"
    assert format_value(123.456789) == "123.46"
    assert format_value(4.56105, "train_minutes") == "4.56"  # no raw floats
    # an upper bound below 100% never reads as 100.00; exact edges stay two decimals
    assert format_value({"value": 0.9998, "n": 5000, "ci95": [0.99887, 0.99996]}) == "99.98% [99.89, 99.996] (n=5,000)"
    assert format_value({"value": 0.0, "n": 500, "ci95": [1e-18, 0.0076]}) == "0.00% [0.00, 0.76] (n=500)"
    assert format_value({"value": 1.0, "n": 50, "ci95": [0.93, 1.0]}) == "100.00% [93.00, 100.00] (n=50)"
    assert format_value(0.9999838, "token_accuracy") == "99.998%"
    assert format_value(0.0012, "eval_loss") == "0.0012"
    assert format_value(1052288) == "1,052,288" and format_value(7) == "7"


def test_index_rows_and_links(tmp_path):
    (tmp_path / "01_a").mkdir()
    (tmp_path / "01_a" / "loss.png").write_bytes(b"png")
    (tmp_path / "01_a" / "results.json").write_text(json.dumps({
        "headline": {"exact_match": {"value": 0.999, "n": 2000, "ci95": [0.996, 1.0]}},
        "runtime": {"platform": "local", "cpu_threads": 2}}))
    (tmp_path / "03_c").mkdir()
    (tmp_path / "03_c" / "results.json").write_text(json.dumps({
        "headline": {"train_minutes": 4.56105},
        "provenance": {"threads": 1, "machine": {"platform": "local", "cpu": "Xeon", "gpu": None}}}))
    path = write_index(tmp_path, [NotebookSpec("01_a", "First", "x:y"), NotebookSpec("02_b", "Second", "x:y"),
                                  NotebookSpec("03_c", "Third", "x:y")])
    text = path.read_text()
    assert "| First (`01_a`) | exact_match: 99.90% [99.60, 100.00] (n=2,000) | local: CPU, 2 threads; an earlier version of mathkit, without provenance |" in text
    assert "[loss](01_a/loss.png)" in text and "[report](01_a.html)" in text
    assert "| Second (`02_b`) | no results yet |" in text
    assert "| Third (`03_c`) | train_minutes: 4.56 | local: CPU (Xeon), 1 thread |" in text  # not "1 threads"


def test_index_folder_is_created(tmp_path):
    path = write_index(tmp_path / "new", [NotebookSpec("01_a", "First", "x:y")])
    assert path.is_file()


def test_readme_block_and_update(tmp_path):
    from mathkit.reporting.index import README_END, README_START, readme_block, update_readme

    reports = tmp_path / "reports"
    (reports / "01_a").mkdir(parents=True)
    (reports / "01_a" / "results.json").write_text(json.dumps({
        "headline": {"exact_match": {"value": 0.9998, "n": 5000, "ci95": [0.99887, 0.99996]},
                     "train_minutes": 4.56105},
        "runtime": {"platform": "local", "cpu_threads": 1}}))
    specs = [NotebookSpec("01_a", "First", "x:y"), NotebookSpec("02_b", "Second", "x:y")]
    block = readme_block(reports, specs)
    assert block.splitlines()[1] == ("- `01_a` (local: CPU, 1 thread; an earlier version of mathkit, without provenance): exact_match: 4999/5000 = 99.98% "
                                     "[99.89, 99.996]; train_minutes: 4.56")
    assert len(block.splitlines()) == 3  # 02_b has no results: no line
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{README_START}\nstale 4/500\n{README_END}\nafter\n")
    assert update_readme(readme, reports, specs)
    assert readme.read_text() == f"# title\n\nbefore\n{block}\nafter\n"
    (tmp_path / "plain.md").write_text("no markers")
    assert not update_readme(tmp_path / "plain.md", reports, specs)


ROOT = Path(__file__).parent.parent


def test_committed_readme_and_index_agree_with_results_json():
    """README.md's headline numbers and reports/index.md are what results.json says (run
    `python -m mathkit index` after a report changes)."""
    from mathkit.cli.notebook_registry import available
    from mathkit.reporting.index import README_END, README_START, readme_block

    specs = available(ROOT / "notebooks")
    readme = (ROOT / "README.md").read_text()
    assert README_START in readme and README_END in readme, "README.md lacks the headline-number markers"
    committed = readme[readme.index(README_START): readme.index(README_END) + len(README_END)]
    assert committed == readme_block(ROOT / "reports", specs)
    index = (ROOT / "reports" / "index.md").read_text()
    rows = [line for line in index.splitlines() if line.startswith("| ") and "`" in line]
    from mathkit.reporting.index import index_row

    assert rows == [index_row(ROOT / "reports", s.name, s.title) for s in specs]


def test_where_it_ran_names_the_commit_or_says_there_is_no_provenance():
    from mathkit.reporting.index import where_it_ran

    prov = {"provenance": {"machine": {"platform": "local", "cpu": "Xeon"}, "threads": 1,
                           "git": {"commit": "0123456789abcdef", "dirty": True}}}
    assert where_it_ran(prov) == "local: CPU (Xeon), 1 thread, commit 0123456 + changes"
    old = {"runtime": {"platform": "local", "cpu_threads": 1}, "finished_utc": "2026-11-24T17:03:12Z"}
    assert where_it_ran(old) == "local: CPU, 1 thread; an earlier version of mathkit (2026-11-24), without provenance"


def test_a_headline_with_arms_shows_each_arm():
    from mathkit.reporting.index import format_value, headline_text

    arms = {"base": {"value": 0.01, "n": 100, "ci95": [0.002, 0.054]},
            "tuned": {"value": 0.2, "n": 100, "ci95": [0.133, 0.289]}}
    assert format_value(arms, "in_template") == ("base 1.00% [0.20, 5.40] (n=100), "
                                                 "tuned 20.00% [13.30, 28.90] (n=100)")
    assert headline_text("in_template", arms) == ("in_template: base 1/100 = 1.00% [0.20, 5.40], "
                                                  "tuned 20/100 = 20.00% [13.30, 28.90]")


def test_a_seed_mean_reads_as_a_mean_with_its_range_not_as_a_count():
    mean = {"value": 0.8034, "n": 139, "min": 0.6547, "max": 0.9784, "std": 0.13, "n_seeds": 3}
    assert headline_text("in_distribution", {"scratch": mean}) == \
        "in_distribution: scratch 80.34% (mean of 3 seeds, 65.47-97.84; n=139 each)"
    assert "/" not in format_value(mean)
    assert format_value([-0.468, 0.122], "vs_baseline_in_distribution") == "[-46.8, +12.2] pp"
