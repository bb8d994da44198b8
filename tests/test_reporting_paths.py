"""Paths in committed files are relative to the repository."""

from pathlib import Path

from mathkit import env
from mathkit.reporting.paths import absolute_paths_in, anchors, portable, portable_path, strip_prefixes


def test_anchors_cover_repo_reports_parent_and_home(tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    pairs = dict(anchors(tmp_path / "reports"))
    assert pairs[str(tmp_path)] == "" and pairs[str(Path.home())] == "~"
    assert pairs[str(env.repo_root())] == ""
    assert list(dict(anchors()).keys()) == sorted(dict(anchors()), key=len, reverse=True)


def test_kaggle_working_folder_is_an_anchor(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setattr(env, "KAGGLE_WORKING", tmp_path / "working")
    import mathkit.reporting.paths as paths

    monkeypatch.setattr(paths, "KAGGLE_WORKING", tmp_path / "working")
    pairs = anchors()
    assert portable_path(tmp_path / "working" / "reports" / "00", pairs) == "reports/00"


def test_portable_path_and_free_text():
    pairs = [("/work/main", ""), ("/tmp/t", ""), ("/root", "~")]
    assert portable_path("/work/main/reports/00/x.jsonl", pairs) == "reports/00/x.jsonl"
    assert portable_path("/work/main", pairs) == "."
    assert portable_path("/root/.cache/hf", pairs) == "~/.cache/hf"
    assert portable_path("/usr/lib/libc.so", pairs) == ".../libc.so"  # outside every anchor
    assert portable_path("reports/00", pairs) == "reports/00"
    assert strip_prefixes("File /work/main/a.py; cwd /work/main. /work/mainframe", pairs) == \
        "File a.py; cwd .. /work/mainframe"
    data = {"records_path": "/tmp/t/reports/00/r.jsonl", "n": 3, "nested": [Path("/work/main/x")],
            "text": "saved to /work/main/reports/00 ok", "fraction": "1/2"}
    assert portable(data, pairs) == {"records_path": "reports/00/r.jsonl", "n": 3, "nested": ["x"],
                                     "text": "saved to reports/00 ok", "fraction": "1/2"}


def test_absolute_paths_in():
    assert absolute_paths_in("see reports/00 and ~/x and 1/2") == []
    assert len(absolute_paths_in('"output_dir": "/work/main/reports", "/tmp/x/y", "/home/u/z"')) == 3


def test_slug_names_a_model_by_its_last_part_in_safe_characters():
    from mathkit.reporting.paths import slug

    assert slug("EleutherAI/pythia-410m") == "pythia-410m"
    assert slug("/some/folder/model v2/") == "model_v2"
    assert slug("tiny-random-gpt-neox") == "tiny-random-gpt-neox"
