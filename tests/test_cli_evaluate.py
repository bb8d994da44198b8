"""``python -m mathkit evaluate`` on tiny saved models: a random Llama (plain and with a LoRA
adapter) on a local dataset file, and an arithmetic decoder of notebook 01 on its records."""

import json

import pytest
import torch

from mathkit.cli import main
from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer

PROBLEMS = [
    {"problem": "What is 5+7?", "answer": "12"},
    {"problem": "Tom has 3 boxes of 4 pens. How many pens?", "answer": "12"},
    {"problem": "What is 10-3?", "answer": "7"},
]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama") / "model"
    tok = tiny_tokenizer()
    tiny_llama(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapter_dir(llama_dir, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(llama_dir)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PROBLEMS))
    return path


def _run(capsys, *args):
    code = main(["evaluate", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_language_model_on_a_local_file(llama_dir, data_file, tmp_path, capsys):
    out = tmp_path / "records.jsonl"
    code, stdout, _ = _run(capsys, "--model", llama_dir, "--dataset", data_file,
                           "--max-new-tokens", 6, "--batch-size", 2, "--style", "plain",
                           "--output", out, "--no-progress")
    assert code == 0
    assert "accuracy:" in stdout and "tokens/s:" in stdout and "n=3" in stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["problem"] for r in records] == [p["problem"] for p in PROBLEMS]
    assert all(r["new_tokens"] <= 6 for r in records)
    summary = json.loads((tmp_path / "records.summary.json").read_text())
    assert summary["n"] == 3 and summary["model"] == str(llama_dir)
    assert summary["correct"] == sum(r["correct"] for r in records)


def test_lora_adapter_changes_the_model(llama_dir, adapter_dir, data_file, tmp_path, capsys):
    common = ["--dataset", data_file, "--max-new-tokens", 8, "--style", "plain", "--no-progress"]
    _run(capsys, "--model", llama_dir, *common, "--output", tmp_path / "base.jsonl")
    code, _, _ = _run(capsys, "--model", llama_dir, "--adapter", adapter_dir, *common,
                      "--output", tmp_path / "lora.jsonl")
    assert code == 0
    # the adapter folder alone also works: its config names the base model
    code, _, _ = _run(capsys, "--model", adapter_dir, *common, "--output", tmp_path / "lora2.jsonl")
    assert code == 0

    def completions(name):
        return [json.loads(x)["completion"] for x in (tmp_path / name).read_text().splitlines()]

    assert completions("lora.jsonl") == completions("lora2.jsonl")
    assert completions("lora.jsonl") != completions("base.jsonl")


def test_calculator_flag_reports_its_uses(llama_dir, data_file, tmp_path, capsys, monkeypatch):
    import mathkit.evaluation.calculator as calc

    code, stdout, _ = _run(capsys, "--model", llama_dir, "--dataset", data_file, "--max-new-tokens", 6,
                           "--style", "plain", "--calculator", "--output", tmp_path / "c.jsonl",
                           "--no-progress")
    assert code == 0 and "calculator:" in stdout and "results written" in stdout
    summary = json.loads((tmp_path / "c.summary.json").read_text())
    # that the calculator writes results inside batched generation is tested in
    # test_evaluation_calculator; here: the flag reaches the evaluator and its count is reported
    assert summary["settings"]["calculator"] is True and isinstance(summary["calculator_uses"], int)
    monkeypatch.setattr(calc, "calculator_supported", lambda tokenizer: False)
    code, _, err = _run(capsys, "--model", llama_dir, "--dataset", data_file, "--calculator",
                        "--output", tmp_path / "d.jsonl", "--no-progress")
    assert code == 2 and "drop --calculator" in err


def test_stop_and_decoder_flags_reach_the_evaluator(llama_dir, data_file, tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        code, stdout, _ = _run(capsys, "--model", llama_dir, "--dataset", data_file, "--max-new-tokens", 6,
                               "--style", "lm_eval_gsm8k", "--stop-string", "e", "--stop-string", "a",
                               "--no-stop-at-answer", "--decoder", "generate", "--threads", 1,
                               "--output", tmp_path / "s.jsonl", "--no-progress")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and "decoder generate" in stdout
    settings = json.loads((tmp_path / "s.summary.json").read_text())["settings"]
    assert settings["stop_strings"] == ["e", "a"] and settings["stop_at_answer"] is False
    assert settings["decoder"] == "generate" and settings["style"] == "lm_eval_gsm8k"
    records = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert all("e" not in r["completion"] and "a" not in r["completion"] for r in records)
    code, _, _ = _run(capsys, "--model", llama_dir, "--dataset", data_file, "--max-new-tokens", 6,
                      "--output", tmp_path / "t.jsonl", "--no-progress")
    summary = json.loads((tmp_path / "t.summary.json").read_text())
    assert summary["decoder"] == "compact" and summary["settings"]["stop_at_answer"] is True


def test_bad_arguments_give_one_line_errors(llama_dir, data_file, tmp_path, capsys):
    code, _, err = _run(capsys, "--model", llama_dir, "--dataset", data_file, "--n", 0)
    assert code == 2 and "--n must be >= 1" in err
    code, _, err = _run(capsys, "--model", llama_dir, "--dataset", data_file, "--threads", -1)
    assert code == 2 and "--threads must be >= 1" in err
    code, _, err = _run(capsys, "--model", llama_dir, "--adapter", tmp_path, "--dataset", data_file)
    assert code == 2 and "adapter_config.json" in err


def test_unknown_hub_model_offline(monkeypatch, data_file, tmp_path, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, _, err = _run(capsys, "--model", "nobody/no-such-model", "--dataset", data_file,
                        "--output", tmp_path / "x.jsonl")
    assert code == 2 and err.startswith("error:") and "nobody/no-such-model" in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def arithmetic_checkpoint(tmp_path_factory):
    from mathkit.models.char_tokenizer import build_char_tokenizer
    from mathkit.models import build_decoder, save

    torch.manual_seed(0)
    tok = build_char_tokenizer(model_max_length=64)
    model = build_decoder("small", tok, max_position_embeddings=64, hidden_size=32,
                          intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    return save(model, tok, tmp_path_factory.mktemp("arith") / "model")


def test_arithmetic_model_on_records_and_on_a_generated_set(arithmetic_checkpoint, tmp_path,
                                                            capsys):
    from mathkit.data.arithmetic import generate_examples
    from mathkit.jsonl import write_jsonl

    data = write_jsonl(generate_examples(6, max_digits=2, seed=3), tmp_path / "test.jsonl")
    out = tmp_path / "arith.jsonl"
    code, stdout, _ = _run(capsys, "--model", arithmetic_checkpoint, "--dataset", data,
                           "--max-new-tokens", 8, "--output", out)
    assert code == 0 and "accuracy:" in stdout and "(n=6)" in stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and {"expression", "expected", "got", "correct", "operand_lengths"} <= set(rows[0])
    summary = json.loads((tmp_path / "arith.summary.json").read_text())
    assert summary["settings"]["scorer"] == "arithmetic" and summary["token_accuracy"] is None
    assert sum(g["n"] for g in summary["by_operand_lengths"].values()) == 6

    code, stdout, _ = _run(capsys, "--model", arithmetic_checkpoint, "--dataset",
                           "arithmetic:1-2:+*", "--n", 5, "--max-new-tokens", 8,
                           "--output", tmp_path / "gen.jsonl")
    assert code == 0 and "(n=5)" in stdout
    ops = {json.loads(x)["op"] for x in (tmp_path / "gen.jsonl").read_text().splitlines()}
    assert ops <= {"+", "*"}

    code, _, err = _run(capsys, "--model", arithmetic_checkpoint, "--dataset", "gsm8k_originals")
    assert code == 2 and "arithmetic records" in err
