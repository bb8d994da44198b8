"""Notebook 05's parameters: every profile valid, teachers and arms checked, bad values name the key."""

from pathlib import Path

import pytest

from mathkit.errors import ParamsError
from mathkit.params import load_params
from mathkit.params.distillation import DistillationParams

PARAMS_DIR = Path(__file__).parent.parent / "params" / "05_distillation"


@pytest.mark.parametrize("profile", sorted(p.stem for p in PARAMS_DIR.glob("*.yaml")))
def test_profiles_load(profile):
    p = load_params(DistillationParams, PARAMS_DIR / f"{profile}.yaml")
    assert p.arms and p.teachers
    assert any(not arm.teachers for arm in p.arms.values()), "every profile keeps a from-scratch arm"


def test_cpu_profile_has_three_seeds_and_keeps_runs_outside_the_reports():
    p = load_params(DistillationParams, PARAMS_DIR / "cpu.yaml")
    assert len(p.seeds) >= 3 and p.checkpoint_dir.startswith("runs/")
    assert any(len(arm.teachers) > 1 for arm in p.arms.values()), "a multi-teacher arm"


def test_arms_resolve_their_distillation_block():
    p = DistillationParams(arms={"scratch": {}, "rev": {"teachers": ["notebook01"], "distillation": {"kd": "reverse"}}})
    assert p.arms["rev"].distillation["kd"] == "reverse" and p.arms["rev"].distillation["temperature"] == 2.0
    assert p.arms["scratch"].distillation == {}


@pytest.mark.parametrize("text, key", [
    ("arms: {a: {teachers: [nobody]}}\n", "arms"),
    ("arms: {a: {distillation: {kd: forward}}}\n", "arms.a.distillation"),           # no teachers
    ("arms: {a: {teachers: [notebook01], distillation: {kd: sideways}}}\n", "arms.a.distillation"),
    ("arms: {a: {teachers: [notebook01], distillation: {temprature: 2.0}}}\n", "arms.a.distillation"),
    ("arms: {a b: {}}\n", "arms"),
    ("arms: {}\n", "arms"),
    ("teachers: {t: {checkpoint: x, train: true}}\n", "teachers.t.train"),
    ("teachers: {t: {}}\n", "teachers.t.train"),
    ("teachers: {t: {train: true, positional_encoding: ropee}}\n", "teachers.t.positional_encoding"),
    ("student_positional_encoding: nah\n", "student_positional_encoding"),
    ("seeds: [1, 1]\n", "seeds"),
    ("teacher_training:\n  max_stepz: 3\n", "training.max_stepz"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(DistillationParams, path)
    assert f"'{key}" in str(err.value) and str(path) in str(err.value), str(err.value)


def test_run_settings_leave_out_the_arms_and_where_things_go():
    a = DistillationParams(seeds=[0], output_dir="x", threads=1)
    b = DistillationParams(seeds=[0, 1], output_dir="y", threads=2, arms={"scratch": {}})
    assert a.run_settings() == b.run_settings()
    assert DistillationParams(student_overrides={"hidden_size": 32}).run_settings() != a.run_settings()


def test_the_notebooks_parameters_cell_holds_the_schema_defaults():
    """papermill without the runner fills unset keys from the cell: it must hold the defaults."""
    import ast

    import jupytext

    nb = jupytext.read(Path(__file__).parent.parent / "notebooks" / "05_distillation.py")
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    values = {}
    for node in ast.parse(cell.source).body:
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert set(values) == set(DistillationParams.model_fields)
    assert DistillationParams(**values).model_dump() == DistillationParams().model_dump()
