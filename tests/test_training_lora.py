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


pytestmark = pytest.mark.usefixtures("one_thread")


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


# ---- Gemma-3 and the QLoRA way out: 4-bit training, save, un-quantized merge, checks -----------

def tiny_gemma3(tokenizer, folder=None, hidden=64):
    """A two-layer random Gemma3ForCausalLM (sliding + full attention, tied embeddings), 64 wide
    for bitsandbytes' CPU 4-bit kernel; saved to ``folder`` when given."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                              query_pre_attn_scalar=32, sliding_window=16, max_position_embeddings=256,
                              layer_types=["sliding_attention", "full_attention"],
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id)
    model = Gemma3ForCausalLM(config).eval()
    if folder is not None:
        save(model, tokenizer, folder)
    return model


def test_compare_fingerprints_counts_identical_completions_and_the_largest_logit_gap():
    a = {"completions": ["x", "y", "z"], "logits": torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 0.5]])}
    b = {"completions": ["x", "Y", "z"], "logits": torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.7, 0.5]])}
    out = lora.compare_fingerprints(a, b, atol=0.5)
    assert (out["n"], out["identical_completions"], out["all_identical"]) == (3, 2, False)
    assert out["max_abs_logit_diff"] == pytest.approx(0.7) and not out["within_tolerance"]
    assert out["next_token_agreement"] == pytest.approx(2 / 3)
    same = lora.compare_fingerprints(a, a, atol=1e-9)
    assert same["all_identical"] and same["within_tolerance"] and same["next_token_agreement"] == 1.0


def test_full_finetune_estimate_adds_gradients_and_adam_moments():
    est = lora.full_finetune_estimate(parameters=2**20, lora_peak_mb=100.0, lora_tokens_per_s=30.0)
    assert est["gradient_and_adam_state_mb"] == pytest.approx(12.0)  # 3 x 4 bytes x 1 Mi parameters
    assert est["peak_mb"] == pytest.approx(112.0) and est["tokens_per_s"] == pytest.approx(20.0)


def test_requantized_merge_refuses_a_full_precision_model(base_dir):
    peft_model = lora.attach_lora(load_base(base_dir), lora.build_lora_config(
        r=4, alpha=8, dropout=0.0, target_modules=["q_proj"]))
    with pytest.raises(ParamsError, match="4-bit"):
        lora.requantized_merge(peft_model)


def test_gemma3_qlora_saves_and_merges_into_the_unquantized_base(tokenizer, tmp_path):
    """Notebook 03's path on a tiny Gemma-3: 4-bit training, the adapter saved and reloaded on a
    4-bit base; merging into that base is lossy; merged into the base reloaded in fp32, saved and
    reloaded from disk, it answers like the adapter on that base."""
    pytest.importorskip("bitsandbytes")
    base = tmp_path / "gemma"
    tiny_gemma3(tokenizer, base)
    model, _ = load(str(base), load_in_4bit=True, dtype="float32")
    assert type(model).__name__ == "Gemma3ForCausalLM" and lora.is_quantized(model)
    assert lora.non_text_modules(model) is None  # text only: nothing to exclude
    peft_model = lora.attach_lora(model, lora.build_lora_config(r=4, alpha=8, dropout=0.0, target_modules=TARGETS),
                                  gradient_checkpointing=True)
    train(peft_model, tokenizer, _data()[0], None, output_dir=tmp_path / "ckpt",
          training=_training(activation_checkpointing=True, optim="adamw_8bit", learning_rate=5e-2))
    adapter = save(peft_model, tokenizer, tmp_path / "adapter")
    prompts = [r["prompt"] for r in word_problems()[:3]]

    quantized, _ = load(str(base), adapter=adapter, load_in_4bit=True, dtype="float32")
    fp_4bit = lora.fingerprint(quantized, tokenizer, prompts, max_new_tokens=6)
    requantized = lora.requantized_merge(quantized)
    assert lora.is_quantized(requantized) and not hasattr(requantized, "peft_config")
    lossy = lora.compare_fingerprints(fp_4bit, lora.fingerprint(requantized, tokenizer, prompts, max_new_tokens=6))
    assert lossy["max_abs_logit_diff"] > 1e-5, "merging into the 4-bit base changed nothing"

    on_base, _ = load(str(base), adapter=adapter, dtype="float32")
    fp_adapter = lora.fingerprint(on_base, tokenizer, prompts, max_new_tokens=6)
    merged_dir = lora.save_merged(on_base, tokenizer, tmp_path / "merged", base_model=str(base), adapter_dir=adapter)
    merged, _ = load(merged_dir)
    assert type(merged).__name__ == "Gemma3ForCausalLM" and merged.dtype == torch.float32
    assert not lora.is_quantized(merged) and not (merged_dir / "adapter_config.json").exists()
    check = lora.compare_fingerprints(fp_adapter, lora.fingerprint(merged, tokenizer, prompts, max_new_tokens=6),
                                      atol=1e-4)
    assert check["all_identical"] and check["within_tolerance"], check
    gap = lora.compare_fingerprints(fp_4bit, lora.fingerprint(merged, tokenizer, prompts, max_new_tokens=6))
    assert gap["max_abs_logit_diff"] > check["max_abs_logit_diff"]  # 4-bit and fp32 bases differ


def test_lora_on_a_vision_language_gemma3_stays_on_the_language_model(tokenizer):
    """google/gemma-3-4b-it loads as Gemma3ForConditionalGeneration: its SigLIP tower has q/k/v
    projections too, which text fine-tuning must leave alone."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    text = tiny_gemma3(tokenizer).config
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                                        mm_tokens_per_image=4, image_token_index=len(tokenizer) - 1,
                                                        boi_token_index=len(tokenizer) - 2,
                                                        eoi_token_index=len(tokenizer) - 3))
    exclude = lora.non_text_modules(model)
    assert exclude is not None and "vision_tower" in exclude
    peft_model = lora.attach_lora(model, lora.build_lora_config(r=4, alpha=8, dropout=0.0, target_modules=TARGETS,
                                                                exclude_modules=exclude))
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A" in n}
    assert adapted and all("language_model" in n for n in adapted)
    assert len(adapted) == 2 * len(TARGETS)  # every projection of both text layers, none of the tower
    ids = tokenizer(word_problems()[0]["prompt"], return_tensors="pt")["input_ids"]
    peft_model(input_ids=ids, labels=ids).loss.backward()  # text only: no image, no token types
    assert all(p.grad is not None for n, p in peft_model.named_parameters() if ".lora_B" in n)
    unrestricted = lora.attach_lora(Gemma3ForConditionalGeneration(model.config), lora.build_lora_config(
        r=4, alpha=8, dropout=0.0, target_modules=TARGETS))
    assert any("vision_tower" in n for n, _ in unrestricted.named_parameters() if ".lora_A" in n)


def test_measure_training_trains_and_leaves_nothing_behind(base_dir, tokenizer, tmp_path):
    config = lora.build_lora_config(r=4, alpha=8, dropout=0.0, target_modules=["q_proj"])
    out = tmp_path / "probe"
    result, parameters = lora.measure_training(str(base_dir), _data()[0], lora_config=config, output_dir=out,
                                               training=_training(max_steps=2, gradient_accumulation_steps=1))
    assert result.global_step == 2 and result.tokens_per_s > 0 and result.memory["cpu_peak_rss_mb"] > 0
    assert parameters == sum(p.numel() for p in load_base(base_dir).parameters())
    assert not out.exists()
