"""reports/index.md: one row per notebook with headline numbers, where it ran, and links."""

import json

from mathkit.cli.notebook_registry import NotebookSpec
from mathkit.reporting.index import format_value, write_index


def test_format_value():
    assert format_value({"value": 0.5, "n": 100, "ci95": [0.4, 0.6]}) == "50.00% [40.00, 60.00] (n=100)"
    assert format_value(123.456789) == "123.457"
    assert format_value({"value": 0.9998, "n": 5000, "ci95": [0.99887, 0.99996]}) == "99.98% [99.89, 100.00] (n=5000)"
    assert format_value(0.9999838) == "0.999984"
    assert format_value(7) == "7"


def test_index_rows_and_links(tmp_path):
    (tmp_path / "01_a").mkdir()
    (tmp_path / "01_a" / "loss.png").write_bytes(b"png")
    (tmp_path / "01_a" / "results.json").write_text(json.dumps({
        "headline": {"exact_match": {"value": 0.999, "n": 2000, "ci95": [0.996, 1.0]}},
        "runtime": {"platform": "local", "cpu_threads": 2}}))
    path = write_index(tmp_path, [NotebookSpec("01_a", "First", "x:y"), NotebookSpec("02_b", "Second", "x:y")])
    text = path.read_text()
    assert "| First (`01_a`) | exact_match: 99.90% [99.60, 100.00] (n=2000) | local: CPU, 2 threads |" in text
    assert "[loss](01_a/loss.png)" in text and "[report](01_a.html)" in text
    assert "| Second (`02_b`) | no results yet |" in text
