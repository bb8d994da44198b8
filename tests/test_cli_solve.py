import json
from pathlib import Path
import re

import pytest
import torch

from mathkit.data.arithmetic import make_example, parse_expression
from mathkit.cli import main
from mathkit.cli.solve import PROMPT, Solver, chat_loop, format_chat_reply


class OracleSolver(Solver):
    """A Solver whose 'model' writes the true completion: tests the CLI around the model."""

    def __init__(self, **kwargs):
        self.max_length, self.temperature = 128, kwargs.get("temperature", 0.0)
        self.ops = kwargs.get("ops", ("+", "-", "*"))
        self.calls = []

    def complete(self, prompts):
        self.calls.append(list(prompts))
        return [make_example(*parse_expression(p))["completion"] for p in prompts]


def feed(lines):
    """An input() replacement that returns ``lines`` one by one, then raises EOFError (Ctrl-D)."""
    it = iter(lines)
    prompts = []

    def fake_input(prompt):
        prompts.append(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return fake_input, prompts


def test_chat_loop_validates_and_continues():
    out = []
    fake_input, prompts = feed(["12a+3", "", "3-5", "12+3", "  99*9=  ", "quit", "1+1"])
    answered = chat_loop(OracleSolver(), input_fn=fake_input, print_fn=out.append)
    text = "\n".join(out)
    assert answered == 2
    assert all(p == PROMPT for p in prompts) and len(prompts) == 6  # stopped at quit
    assert "only digits" in text and "'a'" in text
    assert "negative" in text
    assert "🧮 Think:\n    2+3=5 1+0=1" in text
    assert "✅ Answer: 12+3=15" in text and "✅ Answer: 99*9=891" in text
    assert "1+1=2" not in text  # after quit


@pytest.mark.parametrize("ending", [EOFError, KeyboardInterrupt])
def test_chat_loop_ends_on_eof_and_ctrl_c(ending):
    def fake_input(prompt):
        raise ending

    out = []
    assert chat_loop(OracleSolver(), input_fn=fake_input, print_fn=out.append) == 0
    assert out[-1] == "Bye."


def test_format_chat_reply_unfinished():
    text = format_chat_reply("9+9=", "<think>9+9=18")
    assert "did not close" in text and "No answer" in text
    assert format_chat_reply("3+5=", "8<end>").endswith("✅ Answer: 3+5=8")


@pytest.fixture
def oracle_checkpoint(monkeypatch):
    solver = OracleSolver()
    monkeypatch.setattr(Solver, "from_checkpoint", classmethod(lambda cls, *a, **k: solver))
    return solver


def test_solve_prints_expression_and_answer(oracle_checkpoint, capsys):
    assert main(["solve", "658+189", "7+8=", "100-1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["658+189 847", "7+8 15", "100-1 99"]
    assert oracle_checkpoint.calls == [["658+189=", "7+8=", "100-1="]]  # one batched call


def test_solve_json(oracle_checkpoint, capsys):
    assert main(["solve", "--json", "658+189", "12*3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == [
        {"expression": "658+189", "answer": "847",
         "completion": "<think>8+9=17 5+8+1=14 6+1+1=8</think>847<end>"},
        {"expression": "12*3", "answer": "36", "completion": "<think>12*3=36</think>36<end>"},
    ]


def test_solve_bad_expression_is_one_line_error(oracle_checkpoint, capsys):
    assert main(["solve", "2+2", "two+2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: 'two+2': only digits")
    assert oracle_checkpoint.calls == []  # validated before generating anything


def test_cuda_asked_without_gpu(tiny_checkpoint, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["solve", "--checkpoint", str(tiny_checkpoint), "--device", "cuda", "1+1"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["solve", "--checkpoint", str(tmp_path / "nope"), "1+1"]) == 2
    err = capsys.readouterr().err
    assert "no model at" in err and "--checkpoint" in err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from mathkit.models.char_tokenizer import build_char_tokenizer
    from mathkit.models import build_decoder, save

    torch.manual_seed(0)
    tok = build_char_tokenizer(model_max_length=64)
    model = build_decoder("small", tok, max_position_embeddings=64, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=1, num_attention_heads=2)
    return save(model, tok, tmp_path_factory.mktemp("ckpt") / "model",
                extra_configs={"arithmetic_format": {"ops": ["+", "*"], "min_digits": 1,
                                                     "max_digits": 3, "cot": True}})


def test_real_checkpoint_greedy_and_sampled(tiny_checkpoint, capsys):
    args = ["solve", "--checkpoint", str(tiny_checkpoint), "--max-new-tokens", "6", "--device", "cpu"]
    assert main(args + ["12+3", "45+6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"(12\+3|45\+6) \S.*", line) for line in lines), lines
    assert main(args + ["--temperature", "1.5", "--json", "12+3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["expression"] == "12+3" and len(data[0]["completion"]) > 0
    # the checkpoint's context (64) bounds the input: a 6x6-digit product does not fit
    assert main(args + ["123456*654321"]) == 2
    assert "tokens" in capsys.readouterr().err
    # the model was trained on + and * only (arithmetic_format.json): - is refused up front
    assert main(args + ["9-3"]) == 2
    assert "'-' is not supported here (supported: + *)" in capsys.readouterr().err


def test_chat_loop_refuses_untrained_operator():
    out = []
    fake_input, _ = feed(["4*5", "4+5"])
    assert chat_loop(OracleSolver(ops=("+",)), input_fn=fake_input, print_fn=out.append) == 1
    assert any("not supported" in line for line in out)


# --- the committed arithmetic model (reports/01_arithmetic_cot/model), through `solve` -----------

COMMITTED_MODEL = Path(__file__).parent.parent / "reports" / "01_arithmetic_cot" / "model"
# Additions from the test bucket (held out of every training set), 1-digit, 3-digit with and
# without carries into a fourth digit, and mixed lengths; answers computed here, not by the model.
HELD_OUT = ["0+5", "1+9", "2+2", "4+8", "6+8", "9+7", "7+2",
            "673+977", "899+576", "975+701", "294+289", "587+744", "290+196", "810+749", "160+136",
            "7+705", "631+3", "3+755", "625+3"]


def test_held_out_expressions_are_in_the_test_bucket():
    from mathkit.data.arithmetic.sampling import split_of

    assert [e for e in HELD_OUT if split_of(e) != "test"] == []


@pytest.mark.skipif(not (COMMITTED_MODEL / "model.safetensors").is_file(), reason="no committed model")
def test_committed_model_solves_held_out_additions_exactly(capsys):
    assert main(["solve", "--checkpoint", str(COMMITTED_MODEL), "--device", "cpu", "--json", *HELD_OUT]) == 0
    answers = {r["expression"]: r["answer"] for r in json.loads(capsys.readouterr().out)}
    expected = {e: str(sum(int(x) for x in e.split("+"))) for e in HELD_OUT}
    assert answers == expected
