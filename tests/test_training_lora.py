"""LoRA SFT on a tiny random Llama: config, training writes metrics and an adapter, the adapter
reloads into a fresh base and generates the same, resume continues, merge matches."""

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mathkit.training import lora
from mathkit.env import cpu_supports_bf16
from mathkit.errors import MathkitError, ParamsError
from mathkit.models.io import save_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _rows(n=48):
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({"prompt": f"Question: Tom has {a} apples and buys {b} more. How many?\nAnswer:",
                     "completion": f" {a} + {b} = {a + b}\n#### {a + b}"})
    return rows


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
    corpus = [r["prompt"] + r["completion"] for r in _rows()]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<unk>", "<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")


def _save_tiny_llama(folder, tokenizer, hidden=32):
    """A tiny random Llama with tied embeddings (like SmolLM2), saved so it can be reloaded fresh."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    save_model(LlamaForCausalLM(config), tokenizer, folder)
    return folder


@pytest.fixture(scope="module")
def base_dir(tokenizer, tmp_path_factory):
    return _save_tiny_llama(tmp_path_factory.mktemp("tiny_base"), tokenizer)


def _base(base_dir):
    return LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()


def _settings(**kw):
    defaults = dict(max_steps=2, per_device_train_batch_size=4, per_device_eval_batch_size=8,
                    gradient_accumulation_steps=2, learning_rate=2e-2, warmup_ratio=0.0, max_length=64,
                    precision="fp32", gradient_checkpointing=False, logging_steps=1, eval_steps=1)
    defaults.update(kw)
    return lora.SftSettings(**defaults)


def _data():
    ds = Dataset.from_list(_rows())
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
        lora.check_targets_exist(_base(base_dir), ["c_attn"])
    assert "c_attn" in str(err.value) and "q_proj" in str(err.value)


def test_precision_and_optimizer_on_cpu():
    assert lora.resolve_precision("fp32", "cpu") == (False, False)
    assert lora.resolve_precision("auto", "cpu") == (cpu_supports_bf16(), False)
    with pytest.raises(ParamsError, match="fp16"):
        lora.resolve_precision("fp16", "cpu")
    with pytest.raises(ParamsError):
        lora.resolve_precision("int8", "cpu")
    assert lora.resolve_optimizer("auto", "cpu") == "adamw_torch"
    assert lora.resolve_optimizer("auto", "cuda") == "paged_adamw_8bit"


def test_sft_config_sets_cpu_flags_and_best_checkpoint(tmp_path):
    cfg = lora.build_sft_config(_settings(precision="bf16", eval_steps=0, max_steps=-1), tmp_path,
                                device="cpu", has_eval=True)
    assert cfg.use_cpu and cfg.bf16 and not cfg.fp16
    assert cfg.activation_checkpointing is False and cfg.gradient_checkpointing is False
    assert cfg.load_best_model_at_end and cfg.metric_for_best_model == "eval_loss"
    assert cfg.eval_strategy == cfg.save_strategy == "epoch"
    assert cfg.include_num_input_tokens_seen == "non_padding"
    no_eval = lora.build_sft_config(_settings(), tmp_path, device="cpu", has_eval=False)
    assert not no_eval.load_best_model_at_end and no_eval.save_steps == 1


def test_settings_from_params_take_matching_names():
    s = lora.SftSettings.from_params({"learning_rate": 3e-4, "max_length": 256, "unrelated": 1})
    assert (s.learning_rate, s.max_length, s.gradient_accumulation_steps) == (3e-4, 256, 8)


def test_two_step_sft_writes_metrics_adapter_and_reloads_identically(base_dir, tokenizer, tmp_path):
    model = _base(base_dir)
    before = _logits(model, tokenizer)
    peft_model = lora.attach_lora(model, lora.build_lora_config(r=4, alpha=8, dropout=0.1,
                                                                 target_modules=TARGETS))
    stats = lora.trainable_parameters(peft_model)
    lora_params = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert stats["trainable"] == lora_params and 0 < stats["percent"] < 100

    train, val = _data()
    cfg = lora.build_sft_config(_settings(), tmp_path / "ckpt", device="cpu", has_eval=True, progress=False)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 99, "loss": 9.9}\n')  # a stale history from an earlier run
    trainer, result = lora.train_sft(peft_model, tokenizer, train, val, cfg, metrics_path=metrics)

    assert result.global_step == 2 and result.resumed_from is None
    assert result.train_tokens > 0 and result.tokens_per_s > 0 and result.step_seconds > 0
    assert result.best_checkpoint and result.best_eval_loss is not None
    assert result.memory["cpu_peak_rss_mb"] > 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert any("loss" in r for r in rows) and any("eval_loss" in r for r in rows)
    assert all("step" in r for r in rows) and max(r["step"] for r in rows) == 2  # stale rows gone
    assert not any("train_loss" in r for r in rows)  # the run's mean is stored as mean_train_loss

    trained = trainer.model
    adapter = save_model(trained, tokenizer, tmp_path / "adapter")
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (adapter / f).is_file(), f
    prompts = [r["prompt"] for r in _rows()[:3]]
    reference = lora.greedy_completions(trained, tokenizer, prompts, max_new_tokens=8)
    reloaded = lora.load_adapter(_base(base_dir), adapter)
    check = lora.check_same_generations(reference, reloaded, tokenizer, prompts, max_new_tokens=8)
    assert check["identical"], check["pairs"]
    plain = lora.check_same_generations(reference, _base(base_dir), tokenizer, prompts, max_new_tokens=8)
    assert not plain["identical"], "the base alone generates what the tuned model does: test is blind"
    after = _logits(reloaded, tokenizer)
    assert torch.allclose(after, _logits(trained, tokenizer), atol=1e-6)
    assert not torch.allclose(after, before, atol=1e-4), "the adapter changed nothing"

    merged = lora.merge_adapter(_base(base_dir), adapter)
    assert not hasattr(merged, "peft_config")
    assert torch.allclose(_logits(merged, tokenizer), after, atol=1e-4)


def test_resume_continues_from_last_checkpoint(base_dir, tokenizer, tmp_path):
    train, val = _data()
    config = lora.build_lora_config(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    out = tmp_path / "ckpt"
    metrics = tmp_path / "metrics.jsonl"
    first = lora.attach_lora(_base(base_dir), config)
    lora.train_sft(first, tokenizer, train, None,
                   lora.build_sft_config(_settings(max_steps=2), out, device="cpu", has_eval=False,
                                         progress=False), metrics_path=metrics)
    assert lora.last_checkpoint(out).endswith("checkpoint-2")
    second = lora.attach_lora(_base(base_dir), config)
    _, result = lora.train_sft(second, tokenizer, train, None,
                               lora.build_sft_config(_settings(max_steps=3), out, device="cpu",
                                                     has_eval=False, progress=False),
                               metrics_path=metrics)
    assert result.resumed_from.endswith("checkpoint-2") and result.global_step == 3
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 3  # one history across the restart


def test_merge_refuses_a_quantized_base(tmp_path):
    class Fake4bit:
        is_loaded_in_4bit = True

    with pytest.raises(MathkitError, match="4-bit"):
        lora.merge_adapter(Fake4bit(), tmp_path)


def test_load_adapter_needs_an_adapter_folder(base_dir, tmp_path):
    with pytest.raises(MathkitError, match="adapter_config.json"):
        lora.load_adapter(_base(base_dir), tmp_path)



def test_long_examples_are_dropped_not_truncated(tokenizer):
    rows = Dataset.from_list(_rows(4) + [{"prompt": "Question: long?\nAnswer:", "completion": " 1 +" * 80}])
    kept, dropped = lora.drop_long_examples(rows, tokenizer, max_length=40)
    assert dropped == 1 and len(kept) == 4 and " 1 +" * 80 not in kept["completion"]
    same, none = lora.drop_long_examples(rows, tokenizer, max_length=10_000)
    assert none == 0 and len(same) == 5


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_profile_training_never_sees_held_out_templates_or_eval_problems(profile):
    """The offline profiles train on GSM-Symbolic *training* templates only: no held-out template
    (original or variant) and no evaluated problem may be in the training pool. Sizes are cut
    down; the template split does not depend on n."""
    from mathkit.data import combine_sources
    from mathkit.params import load_params
    from mathkit.params.lora_sft import LoraSftParams

    params = load_params(LoraSftParams, Path(__file__).parent.parent / "params" / "02_lora_sft" / f"{profile}.yaml")
    small = lambda specs: [{**s, "n": min(s.get("n") or 100, 100)} for s in specs]  # noqa: E731
    train, _ = combine_sources(small(params.train_sources), seed=0)
    evals, _ = combine_sources(small(params.eval_sources), seed=0)
    assert {t for t in evals["template"] if t}, "the evaluation set has no GSM templates to check"
    assert lora.find_leaks(train, evals) == {"held_out_templates": [], "problems": []}
    leaky, _ = combine_sources([{"name": "gsm_symbolic", "n": 100, "options": {"include_originals": True}}],
                               seed=0)  # split=None: every template, originals included
    leaks = lora.find_leaks(leaky, evals)
    assert leaks["held_out_templates"] and leaks["problems"], "the check cannot see a leak"


def test_4bit_base_trains_reloads_and_merges_only_in_full_precision(tokenizer, tmp_path):
    """The GPU profiles' path (NF4 base, k-bit preparation, 8-bit AdamW), on bitsandbytes' CPU
    backend: train, save, reload into a fresh 4-bit base identically; merging needs full precision."""
    pytest.importorskip("bitsandbytes")
    from mathkit.models.base import load_base_model

    base_dir = _save_tiny_llama(tmp_path / "base", tokenizer, hidden=64)  # bnb's CPU kernel needs >= 64

    model, _ = load_base_model(str(base_dir), load_in_4bit=True, dtype="float32")
    assert lora.is_quantized(model)
    peft_model = lora.attach_lora(model, lora.build_lora_config(r=4, alpha=8, dropout=0.0,
                                                                 target_modules=["q_proj", "v_proj", "down_proj"]),
                                  gradient_checkpointing=True)
    settings = _settings(gradient_checkpointing=True, optim="adamw_8bit", eval_steps=0, max_steps=2)
    cfg = lora.build_sft_config(settings, tmp_path / "ckpt", device="cpu", has_eval=False, progress=False)
    trainer, result = lora.train_sft(peft_model, tokenizer, _data()[0], None, cfg,
                                     metrics_path=tmp_path / "metrics.jsonl")
    assert result.global_step == 2 and result.train_tokens > 0
    adapter = save_model(trainer.model, tokenizer, tmp_path / "adapter")
    prompts = [r["prompt"] for r in _rows()[:3]]
    reference = lora.greedy_completions(trainer.model, tokenizer, prompts, max_new_tokens=6)
    fresh, _ = load_base_model(str(base_dir), load_in_4bit=True, dtype="float32")
    assert lora.check_same_generations(reference, lora.load_adapter(fresh, adapter), tokenizer, prompts,
                                       max_new_tokens=6)["identical"]
    with pytest.raises(MathkitError, match="4-bit"):
        lora.merge_adapter(load_base_model(str(base_dir), load_in_4bit=True)[0], adapter)
    merged = lora.merge_adapter(_base(base_dir), adapter)
    assert not lora.is_quantized(merged) and not hasattr(merged, "peft_config")
