"""train() on the arithmetic decoder: completion-only labels with our character tokenizer, metrics
file, loadable checkpoints, exact resume, the finished-run rule, bad keys, trainer subclasses."""

import json
import shutil

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import TrainerCallback
from trl import SFTTrainer

from mathkit.data.arithmetic import generate_examples
from mathkit.errors import DataError, ParamsError
from mathkit.jsonl import read_jsonl
from mathkit.models import MathDecoderForCausalLM, build_decoder, load
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.training import policy, train
from mathkit.training.trainer import as_prompt_completion

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


pytestmark = pytest.mark.usefixtures("one_thread")


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
    base = dict(per_device_train_batch_size=16, per_device_eval_batch_size=32, learning_rate=3e-3,
                max_steps=6, warmup_steps=2, eval_steps=3, save_steps=3, logging_steps=1,
                save_total_limit=3, seed=0)
    return {**base, **overrides}


class FirstBatch(TrainerCallback):
    """Keeps the first training batch the trainer builds."""

    batch = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.batch = next(iter(train_dataloader))


def test_labels_cover_only_the_completion_and_eos_is_added_once(tokenizer, tmp_path):
    data = [{"prompt": "3+5=", "completion": "8<end>"}, {"prompt": "12+34=", "completion": "46"}]
    seen = FirstBatch()
    train(fresh_model(tokenizer), tokenizer, data, None, output_dir=tmp_path, callbacks=[seen],
          training=settings(per_device_train_batch_size=2, max_steps=1, warmup_steps=0, save_steps=1,
                            train_sampling_strategy="sequential"))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids, labels, mask = (seen.batch[k].tolist() for k in ("input_ids", "labels", "attention_mask"))
    first = tokenizer("3+5=8<end>")["input_ids"]
    assert ids[0] == first + [pad] * 3 and ids[0].count(eos) == 1       # EOS not doubled
    assert labels[0] == [-100] * 4 + first[4:] + [-100] * 3             # prompt and padding masked
    assert mask[0] == [1] * 6 + [0] * 3
    assert ids[1] == tokenizer("12+34=46")["input_ids"] + [eos]          # EOS appended where missing
    assert labels[1][:6] == [-100] * 6 and labels[1][6:] == ids[1][6:]


def test_data_must_be_prompt_completion_records():
    with pytest.raises(DataError, match=r"lacks column\(s\) \['prompt', 'completion'\]"):
        as_prompt_completion([{"text": "1+1=2"}], "training")
    with pytest.raises(DataError, match="empty"):
        as_prompt_completion([], "training")
    ds = as_prompt_completion(Dataset.from_list([{"prompt": "1+1=", "completion": "2", "n": 1}]), "training")
    assert ds.column_names == ["prompt", "completion"]


def test_an_unknown_training_key_fails_naming_it_before_training(tokenizer, records, tmp_path):
    with pytest.raises(ParamsError) as err:
        train(fresh_model(tokenizer), tokenizer, records[:8], None, output_dir=tmp_path / "run",
              training=settings(learning_rat=1e-3))
    assert "training.learning_rat" in str(err.value) and "learning_rate" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_train_logs_checkpoints_and_resumes_to_the_same_end(tokenizer, records, tmp_path):
    train_set, evals = records[:100], records[100:]
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"

    full = train(fresh_model(tokenizer), tokenizer, train_set, evals, output_dir=full_dir, training=settings())
    assert full.global_step == 6 and full.resumed_from is None
    assert full.last_checkpoint == full_dir / "checkpoint-6"
    assert full.best_checkpoint in (full_dir / "checkpoint-3", full_dir / "checkpoint-6")
    assert full.train_tokens > 0 and full.tokens_per_s > 0 and 0 < full.step_seconds <= full.train_runtime_s
    rows = read_jsonl(full.metrics_path)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "learning_rate", "epoch"} <= set(r) for r in train_rows)
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert max(r["learning_rate"] for r in train_rows) == pytest.approx(3e-3)   # warmup reaches the peak
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [3, 6]
    assert full.final_eval_loss == [r for r in rows if r["kind"] == "eval"][-1]["eval_loss"]
    assert full.best_eval_loss == min(r["eval_loss"] for r in rows if r["kind"] == "eval")
    assert full.final_train_loss == train_rows[-1]["loss"]
    assert rows[-1]["kind"] == "summary" and "mean_train_loss" in rows[-1]

    # A checkpoint loads like a saved model, positional config included.
    assert (full.last_checkpoint / "pe_config.json").is_file()
    reloaded, _ = load(full.last_checkpoint)
    assert isinstance(reloaded, MathDecoderForCausalLM)

    # Interrupted after step 3: only checkpoint-3 is there; a new run continues from it.
    resumed_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint-3", resumed_dir / "checkpoint-3")
    # Its metrics file also holds a row logged after that checkpoint (step 4), marked as old.
    (resumed_dir / "metrics.jsonl").write_text("".join(
        json.dumps({**r, "old": True}) + "\n" for r in rows if r["step"] <= 4 and r["kind"] != "summary"))
    again = train(fresh_model(tokenizer), tokenizer, train_set, evals, output_dir=resumed_dir,
                  training=settings())
    assert again.resumed_from == resumed_dir / "checkpoint-3" and again.global_step == 6
    assert again.final_train_loss == pytest.approx(full.final_train_loss, rel=1e-6)
    assert again.final_eval_loss == pytest.approx(full.final_eval_loss, rel=1e-6)
    expected = load_file(full_dir / "checkpoint-6" / "model.safetensors")
    got = load_file(resumed_dir / "checkpoint-6" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7)
    # Steps 1-3 were not run again (their old rows stay), step 4's stale row was replaced.
    resumed_rows = [(r["step"], "old" in r) for r in read_jsonl(again.metrics_path) if r["kind"] == "train"]
    assert resumed_rows == [(1, True), (2, True), (3, True), (4, False), (5, False), (6, False)]


def test_resume_off_starts_over_and_mixed_precision_is_unwrapped(tokenizer, records, tmp_path, monkeypatch):
    monkeypatch.setattr(policy, "cpu_supports_bf16", lambda: True)  # bf16 autocast even without native bf16
    model = fresh_model(tokenizer)
    first = train(model, tokenizer, records[:40], None, output_dir=tmp_path,
                  training=settings(max_steps=2, save_steps=2, logging_steps=2, bf16=True))
    assert first.final_eval_loss is None and first.best_checkpoint is None
    # bf16 training must not leave autocast wrapped around forward: the model in memory
    # computes exactly like its saved checkpoint.
    reloaded, _ = load(first.last_checkpoint)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reloaded(ids).logits, rtol=0, atol=0)
    (tmp_path / "checkpoint-1").mkdir()  # a stale, unfinished folder of yet another run
    second = train(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path, resume=False,
                   training=settings(max_steps=2, save_steps=2, logging_steps=2))
    assert second.resumed_from is None and second.global_step == 2
    assert [r["step"] for r in read_jsonl(second.metrics_path) if r["kind"] == "train"] == [1, 2]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]


def test_a_finished_run_is_trained_again_not_resumed(tokenizer, records, tmp_path):
    cfg = settings(max_steps=2, save_steps=1, logging_steps=1)
    train(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path, training=cfg)
    again = train(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path, training=cfg)
    assert again.resumed_from is None and again.global_step == 2
    assert [r["step"] for r in read_jsonl(again.metrics_path) if r["kind"] == "train"] == [1, 2]


class ExtraLossTrainer(SFTTrainer):
    """A trainer subclass with an extra loss term, as distillation adds one."""

    weight = 0.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        extra = sum(p.pow(2).sum() for p in model.parameters() if p.requires_grad)
        return loss + self.weight * extra


class Ended(TrainerCallback):
    steps = None

    def on_train_end(self, args, state, control, **kwargs):
        self.steps = state.global_step


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_trainer_class_and_extra_callbacks_are_used(tokenizer, records, tmp_path, weight):
    ended = Ended()
    trainer_class = type("Weighted", (ExtraLossTrainer,), {"weight": weight})
    result = train(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path,
                   training=settings(max_steps=2, save_steps=2), trainer_class=trainer_class,
                   callbacks=[ended])
    assert ended.steps == 2 == result.global_step
    plain = train(fresh_model(tokenizer), tokenizer, records[:40], None, output_dir=tmp_path / "plain",
                  training=settings(max_steps=2, save_steps=2))
    # The extra term reaches the loss: zero weight changes nothing, a weight of 1 raises the loss.
    if weight:
        assert result.final_train_loss > plain.final_train_loss + 1.0
    else:
        assert result.final_train_loss == pytest.approx(plain.final_train_loss, rel=1e-6)


def test_result_paths_are_relative(tokenizer, records, tmp_path):
    out = tmp_path / "report" / "checkpoints"
    result = train(fresh_model(tokenizer), tokenizer, records[:40], records[40:50], output_dir=out,
                   metrics_path=tmp_path / "report" / "metrics.jsonl", training=settings(max_steps=1, save_steps=1))
    d = result.as_dict()
    assert d["metrics_path"] == "metrics.jsonl" and d["last_checkpoint"] == "checkpoints/checkpoint-1"
    assert d["global_step"] == 1 and json.dumps(d) and str(tmp_path) not in json.dumps(d)


def test_remove_checkpoints_deletes_only_checkpoint_folders(tmp_path):
    from mathkit.training.trainer import checkpoints, remove_checkpoints

    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-x", "adapter"):
        (tmp_path / name).mkdir()
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]
    assert remove_checkpoints(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "checkpoint-x", "metrics.jsonl"]
