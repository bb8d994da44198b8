"""LoRA/QLoRA on a tiny random Llama: the recipe's config, train() on a PeftModel writes metrics and
an adapter that reloads identically, resume ends exactly where an uninterrupted run does, merging."""

import json
import shutil

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from mathkit.errors import ParamsError
from mathkit.models import load, save
from mathkit.training import lora, train
from mathkit.training.reload_check import check_same_generations, greedy_completions
from tests.tiny_llama import TARGETS, build_tokenizer, load_base, save_tiny_llama, word_problems


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model gains nothing from threads, and on a shared 2-core machine OpenMP's waiting
    makes each step ~100x slower than one thread does."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def base_dir(tokenizer, tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_base"), tokenizer)


def _training(**kw):
    return {"max_steps": 2, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
            "gradient_accumulation_steps": 2, "learning_rate": 2e-2, "max_length": 64,
            "logging_steps": 1, "eval_steps": 1, "seed": 0, **kw}


def _data():
    ds = Dataset.from_list(word_problems())
    return ds.select(range(40)), ds.select(range(40, 48))


@torch.no_grad()
def _logits(model, tokenizer, text="Question: Tom has 3 apples and buys 4 more. How many?\nAnswer:"):
    model.eval()
    return model(**tokenizer(text, return_tensors="pt")).logits


def test_lora_config_is_the_recipe():
    cfg = lora.build_lora_config(r=32, alpha=64, dropout=0.1, target_modules=TARGETS)
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (32, 64, 0.1)
    assert set(cfg.target_modules) == set(TARGETS)
    assert cfg.task_type == "CAUSAL_LM" and not cfg.ensure_weight_tying
    tied = lora.build_lora_config(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "lm_head"],
                                  tied_embeddings=True)
    assert tied.ensure_weight_tying


@pytest.mark.parametrize("kw, needle", [
    (dict(r=0), "lora_r"), (dict(alpha=0), "lora_alpha"), (dict(dropout=1.0), "lora_dropout"),
    (dict(target_modules=["q_prj"]), "q_prj"), (dict(target_modules=[]), "empty"),
])
def test_bad_lora_settings_fail_with_one_line(kw, needle):
    args = dict(r=8, alpha=16, dropout=0.1, target_modules=TARGETS) | kw
    with pytest.raises(ParamsError) as err:
        lora.build_lora_config(**args)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_target_missing_from_model_names_what_it_has(base_dir):
    with pytest.raises(ParamsError) as err:
        lora.check_targets_exist(load_base(base_dir), ["c_attn"])
    assert "c_attn" in str(err.value) and "q_proj" in str(err.value)


def test_lora_training_writes_metrics_and_an_adapter_that_reloads_identically(base_dir, tokenizer, tmp_path):
    model = load_base(base_dir)
    before = _logits(model, tokenizer)
    assert lora.has_tied_embeddings(model)
    peft_model = lora.attach_lora(model, lora.build_lora_config(r=4, alpha=8, dropout=0.1, target_modules=TARGETS))
    stats = lora.trainable_parameters(peft_model)
    lora_params = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert stats["trainable"] == lora_params and 0 < stats["percent"] < 100

    train_set, val = _data()
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 99, "loss": 9.9}\n')  # a stale history from an earlier run
    result = train(peft_model, tokenizer, train_set, val, output_dir=tmp_path / "ckpt", metrics_path=metrics,
                   training=_training(load_best_model_at_end=True))
    assert result.global_step == 2 and result.resumed_from is None
    assert result.train_tokens > 0 and result.tokens_per_s > 0 and result.step_seconds > 0
    assert result.best_checkpoint and result.best_eval_loss is not None
    assert result.memory["cpu_peak_rss_mb"] > 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2]   # stale rows gone
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [1, 2]
    assert not any("train_loss" in r for r in rows)  # the run's mean is stored as mean_train_loss

    adapter = save(peft_model, tokenizer, tmp_path / "adapter")
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (adapter / f).is_file(), f
    prompts = [r["prompt"] for r in word_problems()[:3]]
    reference = greedy_completions(peft_model, tokenizer, prompts, max_new_tokens=8)
    reloaded, _ = load(str(base_dir), adapter=adapter)
    assert check_same_generations(reference, reloaded, tokenizer, prompts, max_new_tokens=8)["identical"]
    after = _logits(reloaded, tokenizer)
    assert torch.allclose(after, _logits(peft_model, tokenizer), atol=1e-6)
    assert not torch.allclose(after, before, atol=1e-4), "the adapter changed nothing"

    merged = lora.merge_for_inference(reloaded)
    assert not hasattr(merged, "peft_config")
    assert torch.allclose(_logits(merged, tokenizer), after, atol=1e-4)


def test_lora_resume_ends_with_the_same_loss_and_weights_as_an_uninterrupted_run(base_dir, tokenizer, tmp_path):
    config = lora.build_lora_config(r=4, alpha=8, dropout=0.1, target_modules=["q_proj", "v_proj"])
    train_set, _ = _data()
    training = _training(max_steps=4, save_steps=2, gradient_accumulation_steps=1)
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    full = train(lora.attach_lora(load_base(base_dir), config), tokenizer, train_set, None,
                 output_dir=full_dir, training=training)

    resumed_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint-2", resumed_dir / "checkpoint-2")  # interrupted after step 2
    again = train(lora.attach_lora(load_base(base_dir), config), tokenizer, train_set, None,
                  output_dir=resumed_dir, training=training)
    assert again.resumed_from == resumed_dir / "checkpoint-2" and again.global_step == 4
    assert again.final_train_loss == pytest.approx(full.final_train_loss, rel=1e-6)
    expected = load_file(full_dir / "checkpoint-4" / "adapter_model.safetensors")
    got = load_file(resumed_dir / "checkpoint-4" / "adapter_model.safetensors")
    assert expected.keys() == got.keys() and expected
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7)
    steps = [json.loads(line)["step"] for line in (resumed_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 4


def test_merge_for_inference_keeps_a_quantized_base_separate(base_dir):
    class Fake4bit:
        is_loaded_in_4bit = True

    fake = Fake4bit()
    assert lora.merge_for_inference(fake) is fake
    plain = load_base(base_dir)
    assert lora.merge_for_inference(plain) is plain  # nothing to merge


def test_save_merged_of_a_full_precision_model(base_dir, tokenizer, tmp_path):
    peft_model = lora.attach_lora(load_base(base_dir), lora.build_lora_config(
        r=4, alpha=8, dropout=0.0, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)  # a non-zero adapter
    expected = _logits(peft_model, tokenizer)
    out = lora.save_merged(peft_model, tokenizer, tmp_path / "merged", base_model=str(base_dir),
                           adapter_dir=tmp_path / "unused")
    assert not (out / "adapter_config.json").exists()
    merged, _ = load(out)
    assert torch.allclose(_logits(merged, tokenizer), expected, atol=1e-5)


def test_qlora_on_a_4bit_base_trains_reloads_and_merges_in_full_precision(tokenizer, tmp_path):
    """The GPU profiles' path (NF4 base, k-bit preparation, gradient checkpointing, 8-bit AdamW),
    on bitsandbytes' CPU backend."""
    pytest.importorskip("bitsandbytes")
    base_dir = save_tiny_llama(tmp_path / "base", tokenizer, hidden=64)  # bnb's CPU kernel needs >= 64
    model, _ = load(str(base_dir), load_in_4bit=True, dtype="float32")
    assert lora.is_quantized(model)
    peft_model = lora.attach_lora(model, lora.build_lora_config(
        r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"]))
    result = train(peft_model, tokenizer, _data()[0], None, output_dir=tmp_path / "ckpt",
                   training=_training(activation_checkpointing=True, optim="paged_adamw_8bit"))
    assert result.global_step == 2 and result.train_tokens > 0
    assert lora.merge_for_inference(peft_model) is peft_model  # merging would requantize
    adapter = save(peft_model, tokenizer, tmp_path / "adapter")
    prompts = [r["prompt"] for r in word_problems()[:3]]
    reference = greedy_completions(peft_model, tokenizer, prompts, max_new_tokens=6)
    fresh, _ = load(str(base_dir), adapter=adapter, load_in_4bit=True, dtype="float32")
    assert check_same_generations(reference, fresh, tokenizer, prompts, max_new_tokens=6)["identical"]
    out = lora.save_merged(peft_model, tokenizer, tmp_path / "merged", base_model=str(base_dir),
                           adapter_dir=adapter)
    merged, _ = load(out)
    assert not lora.is_quantized(merged) and not hasattr(merged, "peft_config")
    assert merged.dtype == torch.float32
