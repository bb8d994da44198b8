"""The runner: parameter files, papermill execution, failure handling, report publishing."""

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mathkit.cli import notebook_registry as registry
from mathkit.errors import NotebookFailedError, ParamsError
from mathkit.cli import run as run_module
from mathkit.cli.run import params_files, parse_overrides, run_notebook

NOTEBOOK = textwrap.dedent('''\
    # %% [markdown]
    # Math renders offline: $x^2 + 1$; money stays money: $5 and $10.

    # %% tags=["parameters"]
    seed = 0
    output_dir = "reports/demo"
    fail = False

    # %%
    import json, pathlib, sys, warnings
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial.txt").write_text(f"written with seed {seed}")
    for i in range(3):  # a tqdm-like bar redrawn with carriage returns
        sys.stderr.write(f"\\r{50 * i}%|{'#' * i}  | {i}/2 [00:0{i}<00:00, 2.0it/s]")
    sys.stderr.write("\\n")
    warnings.warn("an old " + "API", FutureWarning)
    print("outputs in", out.resolve())

    # %%
    if fail:
        (out / "written_only_by_the_failed_run.txt").write_text("x")
        (out / "results.json").write_text("{}")
        raise RuntimeError("boom on purpose")
    (out / "results.json").write_text(json.dumps({"headline": {"seed": seed}}))
    print("seed", seed)
    ''')


def snapshot(reports: Path, name: str) -> dict[str, bytes]:
    """Every file of a notebook's report (folder, notebook, HTML), byte for byte."""
    files = [p for p in (reports / name).rglob("*") if p.is_file()]
    files += [p for p in (reports / f"{name}.ipynb", reports / f"{name}.html") if p.is_file()]
    return {str(p.relative_to(reports)): p.read_bytes() for p in files}


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
def test_success_publishes_clean_notebook_html_and_results(checkout):
    root, spec = checkout
    reports = root / "reports"
    out = run_notebook(spec, root=root, reports_dir=reports,
                       files=params_files(root, spec.name, None, []), progress=False)
    assert json.loads((out / "results.json").read_text()) == {"headline": {"seed": 3}}
    html = (reports / "99_demo.html").read_text()
    text = (reports / "99_demo.ipynb").read_text()
    assert "seed 3" in html
    executed = json.loads(text)
    # one parameters cell, holding the injected values, not the defaults as if they had been used
    tagged = [c for c in executed["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and "injected-parameters" in tagged[0]["metadata"]["tags"]
    assert "seed = 3" in "".join(tagged[0]["source"]) and "seed = 0" not in text
    # no absolute path of this machine, no progress bar redraws, no warnings.warn output
    for published in (text, html):
        assert str(root) not in published and "/tmp/" not in published
        assert "50%|#" not in published and "an old API" not in published
    assert "outputs in reports/99_demo" in text
    assert executed["metadata"]["papermill"]["output_path"].startswith("reports/")
    # math as MathML, drawn by the browser without any script from the network
    assert "<math" in html and "cdnjs" not in html and 'src="http' not in html
    assert "$5 and $10" in html


@pytest.mark.notebook
def test_failure_names_the_cell_and_leaves_previous_report_byte_identical(checkout):
    root, spec = checkout
    reports = root / "reports"
    files = params_files(root, spec.name, None, [])
    run_notebook(spec, root=root, reports_dir=reports, files=files, progress=False)
    before = snapshot(reports, spec.name)
    assert "99_demo/results.json" in before and "99_demo.html" in before
    with pytest.raises(NotebookFailedError, match=r"failed in cell \d+.*RuntimeError: boom on purpose"):
        run_notebook(spec, root=root, reports_dir=reports, files=files,
                     overrides={"fail": True, "seed": 5}, progress=False)
    # the failed run wrote a file the good one never did and rewrote two more: none of it is left
    assert snapshot(reports, spec.name) == before
    assert (reports / ".staging" / "99_demo.ipynb").is_file()  # kept for inspection


def test_ctrl_c_leaves_previous_report_byte_identical(checkout, monkeypatch):
    root, spec = checkout
    reports = root / "reports"
    (reports / "99_demo").mkdir(parents=True)
    (reports / "99_demo" / "results.json").write_text('{"headline": {"seed": 1}}')
    (reports / "99_demo.ipynb").write_text("{}")
    before = snapshot(reports, spec.name)

    def interrupted(source, output, parameters, cwd, progress):
        out = Path(parameters["output_dir"])
        out.mkdir(parents=True)
        (out / "results.json").write_text("half")
        (out / "written_only_by_the_interrupted_run.txt").write_text("x")
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_notebook(spec, root=root, reports_dir=reports, files=params_files(root, spec.name, None, []),
                     progress=False)
    assert snapshot(reports, spec.name) == before


@pytest.mark.notebook
def test_run_all_validates_first_goes_past_a_failure_and_writes_the_index(checkout, monkeypatch, capsys):
    root, spec = checkout
    (root / "notebooks" / "98_broken.py").write_text(NOTEBOOK)
    (root / "params" / "98_broken").mkdir()
    (root / "params" / "98_broken" / "cpu.yaml").write_text("fail: true\n")
    broken = registry.NotebookSpec("98_broken", "Broken", "tests.demo_schema:DemoNotebookParams")
    monkeypatch.setattr(registry, "NOTEBOOKS", {"98_broken": broken, "99_demo": spec})
    monkeypatch.setattr(run_module, "repo_root", lambda: root)
    reports = root / "reports"
    args = argparse.Namespace(notebook="all", profile=None, params=None, set=None, reports_dir=str(reports),
                              no_html=True, quiet=True)

    (root / "params" / "99_demo" / "cpu.yaml").write_text("seeed: 3\n")  # a typo in the second one
    with pytest.raises(ParamsError, match="unknown key 'seeed'"):
        run_module.cmd_run(args)
    assert not reports.exists()  # validated before the first notebook ran

    (root / "params" / "99_demo" / "cpu.yaml").write_text("seed: 3\n")
    with pytest.raises(NotebookFailedError, match=r"1 of 2 notebooks failed: 98_broken\.py failed"):
        run_module.cmd_run(args)
    assert json.loads((reports / "99_demo" / "results.json").read_text()) == {"headline": {"seed": 3}}
    assert not (reports / "98_broken").exists()
    index = (reports / "index.md").read_text()
    assert "| Broken (`98_broken`) | no results yet |" in index and "| Demo (`99_demo`) | seed: 3 |" in index


def test_terminal_progress_shows_cell_first_line_and_its_output():
    import io
    import logging

    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("\n# load the data\nx = 1"), nbformat.v4.new_code_cell("train()")])
    stream = io.StringIO()
    handler = run_module.TerminalProgress(nb, stream=stream)
    logger = logging.getLogger("test-progress")
    # papermill numbers cells after inserting its own parameters cell (cell 2 here)
    for msg in ("Input Notebook: /somewhere", "Executing Cell 3" + "-" * 20, "Ending Cell 3" + "-" * 20,
                "Executing Cell 4" + "-" * 20, "\r 50%|#   | 1/2", "Ending Cell 4" + "-" * 20,
                "Executing Cell 9" + "-" * 20):
        handler.emit(logger.makeRecord("papermill", logging.INFO, __file__, 1, msg, None, None))
    text = stream.getvalue()
    assert "cell 3/4: # load the data" in text and "cell 4/4: train()" in text
    assert "\r 50%|#   | 1/2" in text  # the training bar, live
    assert "Input Notebook" not in text and "Ending Cell" not in text
    assert "[00:00]" in text and "cell 9/4: \n" in text  # an unexpected number is shown, never raised


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
