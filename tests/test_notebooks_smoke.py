"""Every notebook runs end to end with its smoke parameters through the runner, writes only into
its (temporary) reports folder, and the values of its checked cells (training losses, evaluation
results, headline, conclusion) equal those of the stored reference in tests/references/.

Each notebook is executed once: nbval compares a replay of the fresh run's outputs with the stored
ones (see tests/notebook_references.py). `python -m tests.refresh_references` stores new references.
"""

import json
import re

import jupytext
import nbformat
import pytest

from mathkit.cli.notebook_registry import available
from tests.notebook_references import (REFRESH_COMMAND, ROOT, checked_cells, compare_with_reference,
                                       first_line, reference_path, replay_notebook, run_smoke)

SPECS = available(ROOT / "notebooks")
WATCHED = ("runs", "reports")  # where a run could leave checkpoints or outputs in the checkout


def check_pe_ablation(folder):
    """Notebook 04: one row per (encoding, format, seed) of the smoke grid, and a headline number
    for each encoding in distribution and at twice the training length."""
    from mathkit.jsonl import read_jsonl
    from mathkit.params import load_params
    from mathkit.params.pe_ablation import PeAblationParams

    p = load_params(PeAblationParams, ROOT / "params" / "04_pe_ablation" / "smoke.yaml")
    rows = read_jsonl(folder / "runs.jsonl")
    assert len(rows) == len(p.positional_encodings) * len(p.formats) * len(p.seeds)
    headline = json.loads((folder / "results.json").read_text())["headline"]
    for key in ("exact_match_in_distribution", "exact_match_at_2n"):
        assert set(headline[key][p.formats[0]]) == set(p.positional_encodings)
        assert all(v["n"] > 0 for v in headline[key][p.formats[0]].values())


def check_qlora_gemma3(folder):
    """Notebook 03: the MathX-shaped JSONL it streamed, an adapter and a merged model without
    adapter, the merged model answering like the adapter on its base, merging into the 4-bit base
    lossier than that, and the QLoRA / LoRA / full fine-tuning comparison."""
    from mathkit.data.mathx import MATHX_COLUMNS
    from mathkit.jsonl import read_jsonl

    assert list(read_jsonl(folder / "data" / "mathx_local.jsonl")[0]) == list(MATHX_COLUMNS)
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert (folder / "merged" / "model.safetensors").is_file() and not (folder / "merged" / "adapter_config.json").exists()
    assert json.loads((folder / "merged" / "config.json").read_text())["architectures"] == ["Gemma3ForCausalLM"]
    metrics = json.loads((folder / "results.json").read_text())["metrics"]
    assert metrics["reload_identical"] and metrics["merge_check"]["all_identical"]
    assert metrics["merge_check"]["within_tolerance"]
    assert metrics["requantized_merge"]["max_abs_logit_diff"] > metrics["merge_check"]["max_abs_logit_diff"]
    setups = [(r["set-up"].split(" (")[0], r["packing"]) for r in metrics["speed_and_memory"]]
    assert setups == [("QLoRA", False), ("QLoRA", True), ("LoRA", False), ("full fine-tuning", False)]


def check_distillation(folder):
    """Notebook 05: one row per (arm, seed), every arm in the headline, the distilled arms' paired
    differences to the from-scratch arm, a teacher trained here and the learning curves."""
    from mathkit.jsonl import read_jsonl
    from mathkit.params import load_params
    from mathkit.params.distillation import DistillationParams

    p = load_params(DistillationParams, ROOT / "params" / "05_distillation" / "smoke.yaml")
    rows = read_jsonl(folder / "runs.jsonl")
    assert sorted(r["arm"] for r in rows) == sorted(p.arms) * len(p.seeds)
    results = json.loads((folder / "results.json").read_text())
    headline = results["headline"]
    assert set(headline["in_distribution"]) == set(p.arms) and headline["baseline_arm"] == "scratch"
    assert set(headline["vs_baseline_in_distribution"]) == set(p.arms) - {"scratch"}
    assert set(results["metrics"]["teachers"]) == set(p.teachers)
    assert all(len(curve) == 2 for curve in results["metrics"]["learning_curves"].values())
    assert (folder / "learning_curves.png").is_file()
    lm = results["metrics"]["language_model"]  # experiment 2: teacher and two layer-subset students
    assert set(lm["models"]) == {"teacher", "student_ce", "student_kd"} and lm["student_layers"] == [0, 29]
    students = [lm["models"][s] for s in ("student_ce", "student_kd")]
    assert all(m["parameters"] < lm["models"]["teacher"]["parameters"] and m["train"]["global_step"] == 2
               for m in students)
    assert students[0]["perplexity"] != students[1]["perplexity"]  # two losses: two different students
    assert set(lm["paired_groups"]) == set(p.language_model.eval_groups)
    assert set(headline["language_model"]) == {"teacher", "student_ce", "student_kd"}


EXTRA_CHECKS = {"03_qlora_gemma3_mathx": check_qlora_gemma3,  # what a notebook's smoke run must also hold
                "04_pe_ablation": check_pe_ablation, "05_distillation": check_distillation}


def checkout_files() -> dict[str, float]:
    """Path -> modification time of every file under the checkout's runs/ and reports/."""
    return {str(f): f.stat().st_mtime for d in WATCHED if (ROOT / d).is_dir()
            for f in (ROOT / d).rglob("*") if f.is_file()}


@pytest.mark.notebook
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_smoke_run_matches_reference(spec, tmp_path):
    reports = tmp_path / "reports"
    before = checkout_files()
    run = run_smoke(spec.name, reports)
    assert run.returncode == 0, run.stderr[-3000:]
    assert checkout_files() == before, "the smoke run wrote into the checkout (checkpoints, reports)"
    results = json.loads((reports / spec.name / "results.json").read_text())
    # paths in results.json are relative to the folder holding the reports
    assert results["headline"] and results["params"]["output_dir"] == f"reports/{spec.name}"
    assert results["runtime"]["device"] in ("cpu", "gpu")
    assert list((reports / spec.name).glob("*.png")), "the report has no charts"
    assert (reports / f"{spec.name}.html").stat().st_size > 10_000
    if spec.name in EXTRA_CHECKS:
        EXTRA_CHECKS[spec.name](reports / spec.name)

    nbval = compare_with_reference(reports / f"{spec.name}.ipynb", spec.name, tmp_path)
    assert nbval.returncode == 0, (
        f"{spec.name}: checked outputs differ from tests/references/{spec.name}.ipynb (below). If the "
        f"change is meant, store new references with `{REFRESH_COMMAND} {spec.name}` and review the "
        f"diff.\n" + nbval.stdout[-6000:])


# ---- fast checks of the references and of the comparison itself (no notebook is executed) ----

@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_reference_is_stored_for_the_cells_the_notebook_checks(spec):
    """A tag added or removed, or a checked cell rewritten, without storing new references fails here
    in seconds, before the smoke run would."""
    path = reference_path(spec.name)
    assert path.is_file(), f"no reference for {spec.name}: run `{REFRESH_COMMAND} {spec.name}`"
    stored = checked_cells(nbformat.read(path, as_version=4))
    source = checked_cells(jupytext.read(ROOT / "notebooks" / f"{spec.name}.py"))
    assert [first_line(c.source) for c in stored] == [first_line(c.source) for c in source], (
        f"the checked cells of notebooks/{spec.name}.py changed: run `{REFRESH_COMMAND} {spec.name}`")
    assert len(stored) >= 3, "check the training/evaluation/headline cells, not only the set-up"
    assert all(c.outputs for c in stored), "a checked cell of the reference printed nothing"
    text = json.dumps([c.outputs for c in stored])
    assert "/tmp/" not in text and str(ROOT) not in text, "absolute paths in the reference's outputs"


@pytest.fixture(scope="module")
def reference_01():
    path = reference_path("01_arithmetic_cot")
    if not path.is_file():
        pytest.skip("no stored reference for 01_arithmetic_cot")
    return nbformat.read(path, as_version=4)


def _compare(fresh, tmp_path):
    fresh_path = tmp_path / "fresh.ipynb"
    nbformat.write(fresh, fresh_path)
    return compare_with_reference(fresh_path, "01_arithmetic_cot", tmp_path)


def _edit_output(nb, words: str, edit) -> None:
    """Apply ``edit`` to the printed text (stream or text/plain) of the checked cell showing ``words``."""
    for cell in checked_cells(nb):
        for output in cell.outputs:
            stream = output.output_type == "stream"
            holder, key = (output, "text") if stream else (output.get("data", {}), "text/plain")
            if words in holder.get(key, ""):
                edited = edit(holder[key])
                assert edited != holder[key], f"the edit did not apply to {holder[key]!r}"
                holder[key] = edited
                return
    raise AssertionError(f"no checked cell prints {words!r}")


def test_comparison_passes_on_the_reference_and_ignores_timings(reference_01, tmp_path):
    """The reference against itself passes, also with other durations and speeds (sanitized)."""
    fresh = nbformat.from_dict(json.loads(json.dumps(reference_01)))
    _edit_output(fresh, "final train loss",
                 lambda t: re.sub(r"in \d+ s \([\d,]+ tokens/s\)", "in 123 s (1,234,567 tokens/s)", t))
    _edit_output(fresh, "'train_minutes'", lambda t: re.sub(r"('train_minutes': )[\d.e-]+", r"\g<1>12.5", t))
    nbval = _compare(fresh, tmp_path)
    assert nbval.returncode == 0, nbval.stdout[-3000:]
    assert " passed" in nbval.stdout


def test_comparison_fails_when_a_checked_value_changes(reference_01, tmp_path):
    """One digit of the final training loss changed: nbval fails on that cell and only on it."""
    fresh = nbformat.from_dict(json.loads(json.dumps(reference_01)))
    next_digit = lambda m: f"final train loss {(int(m[1]) + 1) % 10}"  # noqa: E731
    _edit_output(fresh, "final train loss", lambda t: re.sub(r"final train loss (\d)", next_digit, t))
    nbval = _compare(fresh, tmp_path)
    assert nbval.returncode != 0
    assert "Cell outputs differ" in nbval.stdout and "1 failed" in nbval.stdout
    assert 'with session.stage("training")' in nbval.stdout, "the failure names another cell"


def test_replay_refuses_a_reference_that_checks_other_cells(reference_01):
    fresh = nbformat.from_dict(json.loads(json.dumps(reference_01)))
    checked_cells(fresh)[-1].metadata["tags"].remove("nbval-check-output")
    with pytest.raises(AssertionError, match="refresh_references"):
        replay_notebook(fresh, reference_01, "01_arithmetic_cot", "unused.json")
