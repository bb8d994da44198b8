"""The runner: parameter files, papermill execution, failure handling, report publishing."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mathkit.cli import notebook_registry as registry
from mathkit.errors import NotebookFailedError, ParamsError
from mathkit.cli.run import params_files, parse_overrides, run_notebook

NOTEBOOK = textwrap.dedent('''\
    # %% tags=["parameters"]
    seed = 0
    output_dir = "reports/demo"
    fail = False

    # %%
    import json, pathlib
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial.txt").write_text("half-written")

    # %%
    if fail:
        raise RuntimeError("boom on purpose")
    (out / "results.json").write_text(json.dumps({"headline": {"seed": seed}}))
    print("seed", seed)
    ''')


@pytest.fixture()
def checkout(tmp_path, monkeypatch):
    """A minimal checkout: one notebook, its params, a schema registered under a test name."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "99_demo.py").write_text(NOTEBOOK)
    (tmp_path / "params" / "99_demo").mkdir(parents=True)
    (tmp_path / "params" / "99_demo" / "cpu.yaml").write_text("seed: 3\n")
    spec = registry.NotebookSpec("99_demo", "Demo", "tests.demo_schema:DemoNotebookParams")
    monkeypatch.setitem(registry.NOTEBOOKS, "99_demo", spec)
    return tmp_path, spec


@pytest.mark.notebook
def test_success_publishes_notebook_html_and_results(checkout):
    root, spec = checkout
    reports = root / "reports"
    out = run_notebook(spec, root=root, reports_dir=reports,
                       files=params_files(root, spec.name, None, []), progress=False)
    assert json.loads((out / "results.json").read_text()) == {"headline": {"seed": 3}}
    assert (reports / "99_demo.ipynb").is_file()
    assert "seed 3" in (reports / "99_demo.html").read_text()
    executed = json.loads((reports / "99_demo.ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


@pytest.mark.notebook
def test_failure_names_the_cell_and_restores_previous_report(checkout):
    root, spec = checkout
    reports = root / "reports"
    files = params_files(root, spec.name, None, [])
    run_notebook(spec, root=root, reports_dir=reports, files=files, progress=False, html=False)
    before = (reports / "99_demo" / "results.json").read_text()
    with pytest.raises(NotebookFailedError, match=r"failed in cell \d+.*RuntimeError: boom on purpose"):
        run_notebook(spec, root=root, reports_dir=reports, files=files,
                     overrides={"fail": True}, progress=False, html=False)
    assert (reports / "99_demo" / "results.json").read_text() == before
    assert (reports / ".staging" / "99_demo.ipynb").is_file()  # kept for inspection


@pytest.mark.notebook
def test_failure_without_previous_report_leaves_nothing(checkout):
    root, spec = checkout
    reports = root / "reports"
    with pytest.raises(NotebookFailedError):
        run_notebook(spec, root=root, reports_dir=reports, files=params_files(root, spec.name, None, []),
                     overrides={"fail": True}, progress=False, html=False)
    assert not (reports / "99_demo").exists()
    assert not (reports / "99_demo.ipynb").exists()


def test_bad_params_fail_before_any_kernel_starts(checkout):
    root, spec = checkout
    (root / "params" / "99_demo" / "bad.yaml").write_text("seeed: 1\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: unknown key 'seeed'"):
        run_notebook(spec, root=root, reports_dir=root / "reports",
                     files=params_files(root, spec.name, "bad", []))
    assert not (root / "reports" / "99_demo").exists()


def test_params_files_profile_and_extras(tmp_path):
    assert params_files(tmp_path, "nb", None, []) == [tmp_path / "params/nb/cpu.yaml"]
    assert params_files(tmp_path, "nb", "smoke", ["x.yaml"]) == [tmp_path / "params/nb/smoke.yaml",
                                                               Path("x.yaml")]
    assert [str(p) for p in params_files(tmp_path, "nb", None, ["x.yaml"])] == ["x.yaml"]


def test_parse_overrides():
    assert parse_overrides(["a=1", "b=[+, -]", "c=text", "d=0.5"]) == {
        "a": 1, "b": ["+", "-"], "c": "text", "d": 0.5}
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        parse_overrides(["novalue"])


def test_resolve_by_prefix_and_unknown(checkout):
    root, spec = checkout
    assert registry.resolve("99", root / "notebooks") == spec
    with pytest.raises(ParamsError, match="unknown notebook 'zz'; known: 99_demo"):
        registry.resolve("zz", root / "notebooks")


def test_cli_bad_param_file_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_parameter: 1\n")
    proc = subprocess.run([sys.executable, "-m", "mathkit", "run", "01_arithmetic_cot", "--params", str(bad),
                           "--reports-dir", str(tmp_path / "reports")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: unknown key 'no_such_parameter'"
    assert not (tmp_path / "reports" / "01_arithmetic_cot").exists()


def test_cli_unknown_notebook(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mathkit", "run", "zz_nothing"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown notebook 'zz_nothing'" in proc.stderr


def test_cli_index_writes_a_row_per_notebook(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mathkit", "index", "--reports-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "index.md").read_text()
    assert "(`01_arithmetic_cot`) | no results yet |" in text
