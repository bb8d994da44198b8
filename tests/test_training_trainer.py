"""train_causal_lm: completion-only labels, metrics file, checkpoints, exact resume, settings checks."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from mathkit.training import trainer as train_mod
from mathkit.data.arithmetic import generate_examples
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.errors import DataError, ParamsError
from mathkit.models import MathDecoderForCausalLM, build_decoder, load_model
from mathkit.training.trainer import (
    IGNORE_INDEX,
    CompletionCollator,
    TrainSettings,
    tokenize_records,
    train_causal_lm,
    training_arguments,
)

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def records():
    return generate_examples(120, min_digits=1, max_digits=2, seed=0)


def fresh_model(tokenizer):
    torch.manual_seed(0)
    return build_decoder("small", tokenizer, **TINY)


def settings(**overrides):
    base = dict(batch_size=16, eval_batch_size=32, learning_rate=3e-3, max_steps=6, warmup_steps=2,
                eval_steps=3, save_steps=3, logging_steps=1, save_total_limit=3, seed=0, progress=False)
    return TrainSettings(**{**base, **overrides})


def test_labels_cover_only_the_completion_and_eos_is_added_once(tokenizer):
    data = tokenize_records([{"prompt": "3+5=", "completion": "8<end>"},
                             {"prompt": "12+34=", "completion": "46"}], tokenizer)
    eos = tokenizer.eos_token_id
    assert data.input_ids[0][-1] == eos and data.input_ids[0].count(eos) == 1
    assert data.input_ids[1][-1] == eos                      # added where missing
    assert data.prompt_lengths == [4, 6]
    batch = CompletionCollator(tokenizer.pad_token_id)([data[0], data[1]])
    assert batch["input_ids"].shape == (2, 9)                # 12+34=46<end>: the longest
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 4 + data.input_ids[0][4:] + [IGNORE_INDEX] * 3
    assert batch["attention_mask"][0].tolist() == [1] * 6 + [0] * 3
    assert batch["input_ids"][0, 6:].tolist() == [tokenizer.pad_token_id] * 3
    assert batch["labels"][1, :6].tolist() == [IGNORE_INDEX] * 6
    assert batch["labels"][1, 6:].tolist() == data.input_ids[1][6:]


def test_bad_records_and_long_records(tokenizer):
    with pytest.raises(DataError, match="record 1 has \\['text'\\]"):
        tokenize_records([{"prompt": "1+1=", "completion": "2"}, {"text": "1+1=2"}], tokenizer)
    with pytest.raises(DataError, match="empty"):
        tokenize_records([], tokenizer)
    data = tokenize_records([{"prompt": "123+456=", "completion": "579<end>"}], tokenizer, max_length=10)
    assert len(data.input_ids[0]) == 10 and data.prompt_lengths == [8]


@pytest.mark.parametrize("fields, message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"max_steps": 0}, "max_steps must be None or a positive integer"),
    ({"max_steps": None, "num_epochs": 0}, "num_epochs must be > 0"),
    ({"report_to": "mlflow"}, "report_to='mlflow'"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"cpu_threads": 0}, "cpu_threads must be None or a positive integer"),
])
def test_settings_are_validated(fields, message):
    with pytest.raises(ParamsError, match=message):
        TrainSettings(**fields)


def test_bf16_maps_to_autocast_on_a_bf16_cpu_and_to_fp32_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setattr(train_mod.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train_mod, "cpu_supports_bf16", lambda: True)
    args = training_arguments(TrainSettings(bf16=True), tmp_path, has_eval=False)
    assert args.bf16 and args.use_cpu and args.report_to == [] and args.lr_scheduler_type == "cosine"
    monkeypatch.setattr(train_mod, "cpu_supports_bf16", lambda: False)
    assert not training_arguments(TrainSettings(bf16=True), tmp_path, has_eval=False).bf16


def read_metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_logs_checkpoints_and_resumes_to_the_same_end(tokenizer, records, tmp_path):
    train, evals = records[:100], records[100:]
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"

    model = fresh_model(tokenizer)
    full = train_causal_lm(model, tokenizer, train, evals, output_dir=full_dir, settings=settings())
    assert full.global_step == 6 and full.resumed_from is None
    assert full.last_checkpoint == full_dir / "checkpoint-6"
    assert full.best_checkpoint in (full_dir / "checkpoint-3", full_dir / "checkpoint-6")
    rows = read_metrics(full.metrics_path)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "learning_rate", "epoch"} <= set(r) for r in train_rows)
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert max(r["learning_rate"] for r in train_rows) == pytest.approx(3e-3)   # warmup reaches the peak
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [3, 6]
    assert full.final_eval_loss == [r for r in rows if r["kind"] == "eval"][-1]["eval_loss"]
    assert full.final_train_loss == train_rows[-1]["loss"]
    assert rows[-1]["kind"] == "summary"

    # A checkpoint loads like a saved model, positional config included.
    assert (full.last_checkpoint / "pe_config.json").is_file()
    reloaded, _ = load_model(full.last_checkpoint)
    assert isinstance(reloaded, MathDecoderForCausalLM)

    # Interrupted after step 3: only checkpoint-3 is there; a new run continues from it.
    resumed_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint-3", resumed_dir / "checkpoint-3")
    # Its metrics file also holds a row logged after that checkpoint (step 4), marked as old.
    (resumed_dir / "metrics.jsonl").write_text("".join(
        json.dumps({**r, "old": True}) + "\n" for r in rows if r["step"] <= 4 and r["kind"] != "summary"))
    again = train_causal_lm(fresh_model(tokenizer), tokenizer, train, evals,
                            output_dir=resumed_dir, settings=settings())
    assert again.resumed_from == resumed_dir / "checkpoint-3" and again.global_step == 6
    assert again.final_train_loss == pytest.approx(full.final_train_loss, rel=1e-6)
    assert again.final_eval_loss == pytest.approx(full.final_eval_loss, rel=1e-6)
    expected = load_file(full_dir / "checkpoint-6" / "model.safetensors")
    got = load_file(resumed_dir / "checkpoint-6" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7)
    # Steps 1-3 were not run again (their old rows stay), step 4's stale row was replaced.
    resumed_rows = [(r["step"], "old" in r) for r in read_metrics(again.metrics_path) if r["kind"] == "train"]
    assert resumed_rows == [(1, True), (2, True), (3, True), (4, False), (5, False), (6, False)]


def test_resume_off_starts_over_and_mixed_precision_is_unwrapped(tokenizer, records, tmp_path):
    model = fresh_model(tokenizer)
    first = train_causal_lm(model, tokenizer, records[:40], None, output_dir=tmp_path,
                            settings=settings(max_steps=2, save_steps=2, logging_steps=2, bf16=True))
    assert first.final_eval_loss is None and first.best_checkpoint is None
    # bf16 training (where this CPU has it) must not leave autocast wrapped around forward:
    # the model in memory computes exactly like its saved checkpoint.
    reloaded, _ = load_model(first.last_checkpoint)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reloaded(ids).logits, rtol=0, atol=0)
    second = train_causal_lm(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path,
                             settings=settings(max_steps=2, save_steps=2, logging_steps=2, resume=False,
                                               cpu_threads=1))
    assert second.resumed_from is None and second.global_step == 2
    assert [r["step"] for r in read_metrics(second.metrics_path) if r["kind"] == "train"] == [2]


def test_a_finished_run_is_trained_again_not_resumed(tokenizer, records, tmp_path):
    cfg = settings(max_steps=2, save_steps=1, logging_steps=1)
    train_causal_lm(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path, settings=cfg)
    again = train_causal_lm(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path,
                            settings=cfg)
    assert again.resumed_from is None and again.global_step == 2
    assert [r["step"] for r in read_metrics(again.metrics_path) if r["kind"] == "train"] == [1, 2]
