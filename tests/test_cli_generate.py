"""``python -m mathkit generate`` on tiny saved models: an arithmetic decoder of notebook 01, a random
Llama folder, a LoRA adapter folder (alone and as base + --adapter), an offline alias name, and
every way the input can be wrong (one line on stderr, exit code 2)."""

import json

import pytest
import torch

from mathkit.cli import main
from mathkit.cli.solve import Solver
from mathkit.data.arithmetic import make_example, parse_expression, split_of
from mathkit.data.formatting import STYLE_INSTRUCTIONS, build_prompt
from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer

JSON_KEYS = {"model", "kind", "problem", "prompt", "completion", "steps", "answer", "finished",
             "reference", "correct", "source", "note", "settings"}


def _run(capsys, *args):
    code = main(["generate", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _json(capsys, *args):
    code, out, err = _run(capsys, *args, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == JSON_KEYS
    return data


# --- an arithmetic decoder (notebook 01) --------------------------------------------------------

@pytest.fixture(scope="module")
def arithmetic_dir(tmp_path_factory):
    from mathkit.models import build_decoder, save
    from mathkit.models.char_tokenizer import build_char_tokenizer

    torch.manual_seed(0)
    tok = build_char_tokenizer(model_max_length=64)
    model = build_decoder("small", tok, max_position_embeddings=64, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=1, num_attention_heads=2)
    return save(model, tok, tmp_path_factory.mktemp("arith") / "model",
                extra_configs={"arithmetic_format": {"ops": ["+", "*"], "min_digits": 1,
                                                     "max_digits": 2, "cot": True}})


@pytest.fixture
def oracle_model(monkeypatch):
    """The loaded model's completions replaced by the true ones: the printing can be checked."""
    monkeypatch.setattr(Solver, "complete", lambda self, prompts: [
        make_example(*parse_expression(p))["completion"] for p in prompts])


def test_arithmetic_problem_prints_one_step_a_line(arithmetic_dir, oracle_model, capsys):
    code, out, _ = _run(capsys, "--checkpoint", arithmetic_dir, "--problem", " 658+189= ", "--device", "cpu")
    assert code == 0
    assert out.splitlines() == [
        f"Model: {arithmetic_dir}", "Problem: 658+189",
        "Note: 3-digit operands; the model was trained on 1 to 2 digits",
        "Chain of thought:", "  8+9=17", "  5+8+1=14", "  6+1+1=8",
        "Answer: 847", "Reference: 847 (correct)"]


def test_arithmetic_model_really_generates(arithmetic_dir, capsys):
    data = _json(capsys, "--checkpoint", arithmetic_dir, "--problem", "12+3", "--max-new-tokens", 6,
                 "--device", "cpu")
    assert data["kind"] == "arithmetic" and data["prompt"] == "12+3=" and data["reference"] == "15"
    assert data["settings"]["max_new_tokens"] == 6 and data["settings"]["ops"] == ["+", "*"]
    assert isinstance(data["correct"], bool) and data["completion"]  # random weights: some output
    sampled = [_json(capsys, "--checkpoint", arithmetic_dir, "--problem", "12+3", "--max-new-tokens", 6,
                     "--temperature", 1.5, "--seed", s)["completion"] for s in (7, 7)]
    assert sampled[0] == sampled[1]  # the seed fixes the sample


def test_arithmetic_random_draws_held_out_in_the_trained_range(arithmetic_dir, capsys):
    drawn = [_json(capsys, "--checkpoint", arithmetic_dir, "--random", "--seed", s, "--max-new-tokens", 4)
             for s in (0, 1, 2, 3, 0)]
    assert drawn[0]["problem"] == drawn[-1]["problem"]  # the seed picks the problem
    assert len({d["problem"] for d in drawn}) > 1
    for d in drawn:
        a, b, op = parse_expression(d["problem"])
        assert op in "+*" and max(len(str(a)), len(str(b))) <= 2  # arithmetic_format.json: ops, digits
        assert split_of(d["problem"]) == "test"  # never a training expression
        assert d["reference"] == str(make_example(a, b, op)["result"])
        assert d["source"] == {"dataset": "arithmetic", "split": "test"} and d["note"] is None


def test_arithmetic_random_text_shows_reference_and_verdict(arithmetic_dir, oracle_model, capsys):
    code, out, _ = _run(capsys, "--checkpoint", arithmetic_dir, "--random", "--seed", 5)
    lines = out.splitlines()
    assert code == 0 and lines[1].startswith("Problem (arithmetic test): ")
    assert lines[-1].endswith("(correct)") and lines[-1].startswith("Reference: ")


@pytest.mark.parametrize("problem, message", [
    ("two+2", "only digits"),
    ("9-3", "'-' is not supported here (supported: + *)"),  # the model was trained on + and *
    ("123456*654321", "tokens"),                           # its trace does not fit the context of 64
])
def test_arithmetic_bad_expression(arithmetic_dir, problem, message, capsys):
    code, out, err = _run(capsys, "--checkpoint", arithmetic_dir, "--problem", problem)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra", [["--adapter", "x"], ["--style", "plain"]])
def test_language_model_options_are_refused_for_arithmetic(arithmetic_dir, extra, capsys):
    code, _, err = _run(capsys, "--checkpoint", arithmetic_dir, "--problem", "1+1", *extra)
    assert code == 2 and f"{extra[0]} applies to language models" in err


# --- language models: a folder, an adapter, an alias --------------------------------------------

@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama") / "model"
    tok = tiny_tokenizer()
    tiny_llama(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapter_dir(llama_dir, tmp_path_factory):
    """A LoRA adapter saved like notebook 02's: next to the report's results.json."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(llama_dir)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    report = tmp_path_factory.mktemp("report")
    (report / "results.json").write_text(json.dumps({"params": {"prompt_style": "think", "system_prompt": None}}))
    model.save_pretrained(report / "adapter")
    return report / "adapter"


def test_language_model_folder(llama_dir, capsys):
    args = ("--checkpoint", llama_dir, "--problem", "What is 5+7?", "--max-new-tokens", 6, "--device", "cpu")
    data = _json(capsys, *args)
    assert data["kind"] == "language_model" and data["problem"] == "What is 5+7?"
    assert data["prompt"] == build_prompt(tiny_tokenizer(), "What is 5+7?", style="gsm8k")  # the default style
    assert data["settings"] == {"style": "gsm8k", "max_new_tokens": 6, "temperature": 0.0, "seed": 0}
    assert data["reference"] is None and data["correct"] is None and data["source"] is None
    assert data["steps"] == [line.strip() for line in data["completion"].splitlines() if line.strip()]
    assert _json(capsys, *args)["completion"] == data["completion"]  # greedy
    code, out, _ = _run(capsys, *args, "--style", "plain")
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"Model: {llama_dir} (prompt style plain)"
    assert lines[1] == "Problem: What is 5+7?" and lines[2] == "Solution:" and lines[-1].startswith("Answer: ")


def test_language_model_sampling_follows_the_seed(llama_dir, capsys):
    args = ("--checkpoint", llama_dir, "--problem", "What is 5+7?", "--max-new-tokens", 8, "--temperature", 1.0)
    first, again, other = (_json(capsys, *args, "--seed", s)["completion"] for s in (0, 0, 1))
    assert first == again and first != other


def test_language_model_random_problem_has_reference(llama_dir, capsys):
    from mathkit.data import load_math_dataset

    expected = load_math_dataset("gsm8k_originals", split="test", n=1, seed=2)[0]
    data = _json(capsys, "--checkpoint", llama_dir, "--random", "--dataset", "gsm8k_originals", "--seed", 2,
                 "--max-new-tokens", 4)
    assert data["problem"] == expected["problem"] and data["reference"] == expected["answer"]
    assert data["source"] == {"dataset": "gsm8k_originals", "split": "test", "id": expected["id"]}
    assert isinstance(data["correct"], bool)
    code, out, _ = _run(capsys, "--checkpoint", llama_dir, "--random", "--dataset", "gsm8k_originals",
                        "--seed", 2, "--max-new-tokens", 4)
    assert f"Problem (gsm8k_originals test, {expected['id']}): " in out
    assert f"Reference: {expected['answer']} (" in out and "(cut off after 4 new tokens" in out


def test_adapter_folder_uses_its_base_and_recorded_style(llama_dir, adapter_dir, capsys):
    common = ("--problem", "What is 5+7?", "--max-new-tokens", 8)
    alone = _json(capsys, "--checkpoint", adapter_dir, *common)
    on_base = _json(capsys, "--checkpoint", llama_dir, "--adapter", adapter_dir, *common)
    base = _json(capsys, "--checkpoint", llama_dir, *common, "--style", "think")
    assert alone["settings"]["style"] == "think" == on_base["settings"]["style"]  # from results.json
    assert STYLE_INSTRUCTIONS["think"] in alone["prompt"] and alone["prompt"] == base["prompt"]
    assert alone["completion"] == on_base["completion"] != base["completion"]
    assert on_base["model"] == f"{llama_dir} + {adapter_dir}"


def test_offline_alias_goes_to_the_loader(llama_dir, monkeypatch, capsys):
    import mathkit.models

    asked = []

    def fake_load(name, **kwargs):
        asked.append((name, kwargs))
        return mathkit.models.loading.load(llama_dir, device="cpu")

    monkeypatch.setattr(mathkit.models, "load", fake_load)
    data = _json(capsys, "--checkpoint", "smollm2-135m-instruct", "--problem", "What is 5+7?",
                 "--max-new-tokens", 3)
    assert asked == [("smollm2-135m-instruct", {"adapter": None, "device": "auto"})]
    assert data["kind"] == "language_model" and data["settings"]["style"] == "gsm8k"


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--problem", "1+1", "--random"], "not both"),
    ([], "give either --problem TEXT or --random"),
    (["--problem", "   "], "the problem is empty"),
    (["--problem", "1+1", "--max-new-tokens", 0], "--max-new-tokens must be >= 1"),
    (["--problem", "1+1", "--temperature", -1], "--temperature must be >= 0"),
    (["--problem", "1+1", "--dataset", "gsm8k_originals"], "drop it with --problem"),
])
def test_bad_requests_fail_before_loading(args, message, monkeypatch, capsys):
    import mathkit.models

    monkeypatch.setattr(mathkit.models, "load", lambda *a, **k: pytest.fail("loaded a model"))
    code, out, err = _run(capsys, "--checkpoint", "smollm2-135m-instruct", *args)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_over_long_problem(llama_dir, capsys):
    code, _, err = _run(capsys, "--checkpoint", llama_dir, "--problem", "What is 5+7? " * 40)
    assert code == 2 and "the problem is too long" in err and "reads at most 512" in err


def test_no_model_at_the_folder(tmp_path, capsys):
    code, _, err = _run(capsys, "--checkpoint", tmp_path / "nope", "--problem", "1+1")
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "--checkpoint", tmp_path / "empty", "--problem", "1+1")
    assert code == 2 and "holds no config.json" in err


def test_unknown_dataset_for_random(llama_dir, capsys):
    code, _, err = _run(capsys, "--checkpoint", llama_dir, "--random", "--dataset", "no_such_set")
    assert code == 2 and "unknown dataset 'no_such_set'" in err


def test_cuda_asked_without_gpu(arithmetic_dir, llama_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    for checkpoint in (arithmetic_dir, llama_dir):
        code, _, err = _run(capsys, "--checkpoint", checkpoint, "--problem", "1+1", "--device", "cuda")
        assert code == 2 and "no CUDA GPU" in err
