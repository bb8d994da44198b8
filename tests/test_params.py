"""Parameter files: unknown keys, wrong types and bad values fail with one line naming file and key;
every notebook's parameters cell holds its schema's defaults."""

import ast
from pathlib import Path

import pytest
from pydantic import field_validator

from mathkit.errors import ParamsError
from mathkit.params import NotebookParams, load_params, merge_values, read_yaml

ROOT = Path(__file__).parent.parent


class DemoParams(NotebookParams):
    steps: int = 10
    lr: float = 1e-3
    name: str = "x"

    @field_validator("steps")
    @classmethod
    def _positive(cls, v):
        if v < 1:
            raise ValueError("must be >= 1")
        return v


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_later_file_wins(tmp_path):
    a = write(tmp_path, "a.yaml", "steps: 5\nlr: 0.1\n")
    b = write(tmp_path, "b.yaml", "steps: 7\n")
    p = load_params(DemoParams, a, b)
    assert (p.steps, p.lr, p.name) == (7, 0.1, "x")


def test_overrides_win_over_files(tmp_path):
    a = write(tmp_path, "a.yaml", "steps: 5\n")
    assert load_params(DemoParams, a, overrides={"steps": 9}).steps == 9


def test_int_accepted_for_float(tmp_path):
    a = write(tmp_path, "a.yaml", "lr: 1\n")
    assert load_params(DemoParams, a).lr == 1.0


def test_unknown_key_names_file_and_key(tmp_path):
    a = write(tmp_path, "a.yaml", "steps: 5\nlearning_rate: 0.1\n")
    with pytest.raises(ParamsError) as err:
        load_params(DemoParams, a)
    msg = str(err.value)
    assert str(a) in msg and "'learning_rate'" in msg and "unknown key" in msg
    assert "\n" not in msg


def test_wrong_type_names_key(tmp_path):
    a = write(tmp_path, "a.yaml", "steps: '5'\n")
    with pytest.raises(ParamsError, match=r"a\.yaml: key 'steps'"):
        load_params(DemoParams, a)


def test_out_of_range_names_key_and_reason(tmp_path):
    a = write(tmp_path, "a.yaml", "steps: 0\n")
    with pytest.raises(ParamsError, match=r"key 'steps'.*>= 1"):
        load_params(DemoParams, a)


def test_error_names_the_file_that_holds_the_bad_key(tmp_path):
    good = write(tmp_path, "good.yaml", "steps: 5\n")
    bad = write(tmp_path, "bad.yaml", "lr: fast\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: key 'lr'"):
        load_params(DemoParams, good, bad)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        read_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        read_yaml(write(tmp_path, "x.yaml", "a: [1, 2\n"))
    with pytest.raises(ParamsError, match="mapping"):
        read_yaml(write(tmp_path, "y.yaml", "- 1\n- 2\n"))


def test_from_namespace_picks_schema_fields_only():
    p = DemoParams.from_namespace({"steps": 3, "unrelated": object(), "seed": 4})
    assert (p.steps, p.seed) == (3, 4)
    with pytest.raises(ParamsError, match="notebook parameters: key 'steps'"):
        DemoParams.from_namespace({"steps": -1})


def test_every_notebook_has_seed_output_dir_and_threads():
    p = DemoParams()
    assert (p.seed, p.threads) == (0, 0)
    with pytest.raises(ParamsError, match="key 'threads'"):
        DemoParams.from_namespace({"threads": -1})


def test_mappings_merge_key_by_key_and_dotted_keys_set_one_key():
    base = {"steps": 1, "training": {"max_steps": 5, "learning_rate": 0.1}}
    assert merge_values(base, {"training": {"max_steps": 9}}) == {
        "steps": 1, "training": {"max_steps": 9, "learning_rate": 0.1}}
    assert merge_values(base, {"training.learning_rate": 0.2, "steps": 2}) == {
        "steps": 2, "training": {"max_steps": 5, "learning_rate": 0.2}}
    assert base == {"steps": 1, "training": {"max_steps": 5, "learning_rate": 0.1}}  # not changed


def parameters_cell(notebook: str) -> dict:
    import jupytext

    nb = jupytext.read(ROOT / "notebooks" / f"{notebook}.py")
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{notebook} needs exactly one cell tagged parameters"
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cells[0].source).body}


@pytest.mark.parametrize("notebook", ["00_base_model_eval", "01_arithmetic_cot", "02_lora_sft", "03_qlora_gemma3_mathx", "04_pe_ablation"])
def test_parameters_cell_equals_schema_defaults(notebook):
    """papermill without the runner fills unset keys from the cell: it must hold the defaults."""
    from mathkit.cli.notebook_registry import NOTEBOOKS

    schema = NOTEBOOKS[notebook].load_schema()
    assert parameters_cell(notebook) == schema().model_dump()
