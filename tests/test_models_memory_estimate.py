"""The memory estimate: the parts it adds up, how they move with the settings (QLoRA < LoRA < full,
checkpointing, 8-bit and paged optimizers, sliding-window caches), and the errors for settings that
do not go together. The activation formula itself is checked in test_models_activation_memory.py."""

from dataclasses import replace

import pytest

from mathkit.errors import ParamsError
from mathkit.models import MathDecoderConfig, MathDecoderForCausalLM
from mathkit.models.architectures import KNOWN
from mathkit.models.memory_estimate import (CPU_ALLOCATOR_SLACK, CPU_INFERENCE_OVERHEAD_BYTES,
                                            CPU_TRAINING_OVERHEAD_BYTES, CUDA_OVERHEAD_BYTES, MemoryEstimate, estimate,
                                            estimate_training_run, estimates_text)

SETTINGS = dict(seq_len=256, batch=2, device="cuda", compute_dtype="bfloat16")


def test_parts_sum_to_the_total_and_print():
    est = estimate("smollm2-135m", "lora", **SETTINGS)
    assert isinstance(est, MemoryEstimate)
    assert est.total_bytes == sum(est.parts().values()) > 0
    d = est.as_dict()
    assert d["total_bytes"] == est.total_bytes and d["parameters"] == 134_515_008 and d["lora_rank"] == 16
    assert sum(d[name] for name in MemoryEstimate.PARTS) == d["total_bytes"]
    text = str(est)
    assert text == est.table() and "smollm2-135m" in text and "total" in text and "LoRA adapter" in text
    assert "KV cache" not in text  # parts that are zero are left out


def test_float_weights_are_parameters_times_bytes():
    for dtype, size in (("float32", 4), ("bfloat16", 2), ("float16", 2)):
        assert estimate("tinyllama-1.1b", "inference", dtype=dtype, device="cuda").weights == 1_100_048_384 * size


def test_quantized_weights_keep_embeddings_wide():
    arch = KNOWN["gemma-3-270m"]
    qlora = estimate(arch, "qlora", **SETTINGS)
    # 4-bit matrices (+ double-quantized absmax), the tied 262k embedding and norms in fp32 (peft upcasts)
    wide = arch.parameters - arch.quantizable_parameters
    expected = arch.quantizable_parameters * (0.5 + (1 + 4 / 256) / 64) + wide * 4
    assert qlora.weights == pytest.approx(expected, abs=1)
    assert qlora.weights > arch.embedding_parameters * 4  # the embedding alone stays 671 MB
    inference = estimate(arch, "inference", dtype="nf4", device="cuda")  # no k-bit preparation: bf16 embedding
    assert inference.weights < qlora.weights
    single = estimate(arch, "inference", dtype="nf4", double_quant=False, device="cuda")
    assert single.weights > inference.weights
    int8 = estimate("mistral-7b", "inference", dtype="int8", device="cuda").weights
    bf16 = estimate("mistral-7b", "inference", dtype="bfloat16", device="cuda").weights
    nf4 = estimate("mistral-7b", "inference", dtype="4bit", device="cuda").weights
    assert nf4 < int8 < bf16


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma-3-270m", "pythia-2.8b", "gemma-3-4b"])
def test_qlora_below_lora_below_full(name):
    qlora = estimate(name, "qlora", **SETTINGS)
    lora = estimate(name, "lora", dtype="float32", **SETTINGS)
    full = estimate(name, "full", dtype="float32", **SETTINGS)
    assert qlora.total_bytes < lora.total_bytes < full.total_bytes
    assert full.trainable_parameters == full.parameters > lora.trainable_parameters == qlora.trainable_parameters > 0
    assert estimate(name, "lora", dtype="bfloat16", **SETTINGS).total_bytes < full.total_bytes


def test_qlora_of_gemma_270m_holds_more_than_bf16_lora():
    """peft upcasts what is not 4-bit to fp32 for QLoRA: the tied embedding, 63% of Gemma-3-270m,
    then takes more than the whole model in bf16."""
    qlora = estimate("gemma-3-270m", "qlora", **SETTINGS)
    assert qlora.weights > estimate("gemma-3-270m", "lora", dtype="bfloat16", **SETTINGS).weights
    assert qlora.weights < estimate("smollm2-135m", "lora", dtype="bfloat16", **SETTINGS).weights * 3
    # Gemma-3-4B's embedding is 16% of it: there QLoRA still saves (4.6 GB of weights against 8.6 GB)
    assert estimate("gemma-3-4b", "qlora", **SETTINGS).weights < 0.6 * estimate(
        "gemma-3-4b", "lora", dtype="bfloat16", **SETTINGS).weights


def test_lora_trains_the_adapter_only():
    est = estimate("smollm2-135m", "lora", lora_rank=8, lora_targets="attention", **SETTINGS)
    adapter = 30 * 8 * ((576 + 576) + 2 * (576 + 192) + (576 + 576))  # r x (in + out), q/k/v/o in 30 blocks
    assert est.trainable_parameters == adapter
    assert est.adapter == est.gradients == adapter * 4  # fp32
    assert est.optimizer_states == adapter * 8  # two fp32 moments
    assert est.autocast_copies == 0  # bf16 weights, bf16 compute


def test_full_fine_tuning_state_follows_the_weights_dtype():
    fp32 = estimate("smollm2-135m", "full", dtype="float32", compute_dtype="float32", seq_len=8, device="cuda")
    assert fp32.gradients == fp32.weights and fp32.optimizer_states == 2 * fp32.weights
    mixed = estimate("smollm2-135m", "full", dtype="float32", compute_dtype="bfloat16", seq_len=8, device="cuda")
    assert mixed.autocast_copies > 0 and mixed.activations < fp32.activations


def test_checkpointing_lowers_activations():
    for method in ("full", "lora", "qlora"):
        plain = estimate("gemma-3-270m", method, **SETTINGS)
        checkpointed = estimate("gemma-3-270m", method, gradient_checkpointing=True, **SETTINGS)
        assert checkpointed.activations < plain.activations / 5
        assert checkpointed.total_bytes < plain.total_bytes and checkpointed.logits == plain.logits


def test_eight_bit_and_paged_optimizers_lower_optimizer_state():
    states = {opt: estimate("tinyllama-1.1b", "full", optimizer=opt, **SETTINGS)
              for opt in ("adamw_torch", "adamw_32bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd")}
    assert states["adamw_8bit"].optimizer_states < states["adamw_torch"].optimizer_states  # bf16 moments: 4 B
    assert states["adamw_torch"].optimizer_states < states["adamw_32bit"].optimizer_states  # fp32 moments: 8 B
    for paged, unpaged in (("paged_adamw_8bit", "adamw_8bit"), ("paged_adamw_32bit", "adamw_32bit")):
        assert states[paged].optimizer_states == 0 < states[unpaged].optimizer_states
        assert states[paged].paged_optimizer_states == states[unpaged].optimizer_states  # listed, not counted
        assert "paged optimizer states" in str(states[paged])
    assert states["sgd"].optimizer_states == 0


def test_inference_has_no_gradients_or_optimizer_but_a_kv_cache():
    est = estimate("smollm2-135m", "inference", 1024, 4, device="cpu")
    assert est.gradients == est.optimizer_states == est.adapter == est.trainable_parameters == 0
    assert est.kv_cache == 2 * 4 * 192 * 30 * 1024 * 4  # keys and values, 3 kv heads x 64, 30 layers, fp32
    assert est.overhead == CPU_INFERENCE_OVERHEAD_BYTES
    assert estimate("smollm2-135m", "lora", device="cpu").kv_cache == 0


def test_sliding_window_layers_cap_the_kv_cache():
    short = estimate("gemma-3-270m", "inference", 512, device="cuda").kv_cache
    long = estimate("gemma-3-270m", "inference", 4096, device="cuda").kv_cache
    per_token_layer = 2 * 256 * 2  # one kv head of 256, keys and values, bf16
    assert short == per_token_layer * 18 * 512
    assert long == per_token_layer * (3 * 4096 + 15 * 512)  # the 15 sliding layers keep 512 tokens


def test_training_logits_are_large_for_a_large_vocabulary():
    gemma = estimate("gemma-3-270m", "lora", **SETTINGS)
    assert gemma.logits == 2 * 256 * 262144 * 12 and gemma.logits > gemma.activations
    assert estimate("smollm2-135m", "lora", **SETTINGS).logits == 2 * 256 * 49152 * 12


def test_overhead_depends_on_the_device():
    assert estimate("smollm2-135m", device="cuda").overhead == CUDA_OVERHEAD_BYTES
    cpu = estimate("smollm2-135m", "lora", device="cpu")
    assert cpu.overhead == CPU_TRAINING_OVERHEAD_BYTES
    assert cpu.allocator_slack == pytest.approx(CPU_ALLOCATOR_SLACK * (cpu.activations + cpu.logits), abs=1)
    assert estimate("smollm2-135m", "lora", device="cuda").allocator_slack == 0
    assert estimate("smollm2-135m", device="cpu").allocator_slack == 0  # generation frees little per step


def test_defaults_follow_the_device():
    assert estimate("smollm2-135m", device="cpu").settings["dtype"] == "float32"
    cuda = estimate("smollm2-135m", "qlora", device="cuda").settings
    assert (cuda["dtype"], cuda["compute_dtype"], cuda["optimizer"]) == ("nf4", "bfloat16", "adamw")
    assert estimate("smollm2-135m", "qlora", device="cpu").settings["compute_dtype"] == "float32"


def test_configs_and_models_are_accepted():
    config = MathDecoderConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                               vocab_size=20)
    assert estimate(config, "full", 64, 32, device="cpu").parameters == estimate(
        MathDecoderForCausalLM(config), "full", 64, 32, device="cpu").parameters
    assert estimate(replace(KNOWN["smollm2-135m"], name="mine"), device="cpu").model == "mine"


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="gpt-5"), "unknown model 'gpt-5'.*known: smollm2-135m"),
    (dict(method="pretrain"), "unknown method 'pretrain'; use one of full, lora, qlora, inference"),
    (dict(method="full", dtype="nf4"), "full fine-tuning trains every weight, and nf4 weights cannot be trained"),
    (dict(method="lora", dtype="int8"), "LoRA on int8 weights is QLoRA: use method='qlora'"),
    (dict(method="qlora", dtype="bfloat16"), "QLoRA keeps the base quantized"),
    (dict(dtype="float8"), "unknown dtype 'float8'"),
    (dict(dtype="nf4", compute_dtype="int8"), "compute_dtype must be a float dtype"),
    (dict(optimizer="adamw"), "inference has no optimizer"),
    (dict(gradient_checkpointing=True), "inference has no optimizer and nothing to checkpoint"),
    (dict(method="lora", optimizer="lion"), "unknown optimizer 'lion'"),
    (dict(method="lora", optimizer="paged_adamw_8bit", device="cpu"), "pages GPU memory to the CPU"),
    (dict(method="full", lora_rank=8), "lora_rank is for method 'lora' or 'qlora'"),
    (dict(method="lora", lora_rank=0), "lora_rank must be a positive integer"),
    (dict(method="lora", lora_dropout=1.0), r"lora_dropout must lie in \[0, 1\)"),
    (dict(method="lora", lora_targets=["c_attn"]), "LoRA targets"),
    (dict(seq_len=0), "seq_len must be a positive integer"),
    (dict(device="tpu"), "device must be 'cuda' or 'cpu'"),
])
def test_bad_settings_say_what_is_wrong(kwargs, message):
    kwargs = {"model": "smollm2-135m", "device": "cuda", **kwargs}
    with pytest.raises(ParamsError, match=message):
        estimate(kwargs.pop("model"), **kwargs)


def test_a_training_block_sets_batch_length_checkpointing_and_optimizer():
    block = {"per_device_train_batch_size": 4, "max_length": 384, "optim": "adamw_8bit",
             "activation_checkpointing": True}
    est = estimate_training_run("smollm2-135m", "lora", block, device="cuda", compute_dtype="bfloat16")
    assert est == estimate("smollm2-135m", "lora", 384, 4, device="cuda", compute_dtype="bfloat16",
                           optimizer="adamw_8bit", gradient_checkpointing=True)
    # transformers' default batch (8), an explicit length, bf16 autocast from the block
    est = estimate_training_run("smollm2-135m", "full", {"bf16": True}, seq_len=64, device="cuda", dtype="float32")
    assert (est.settings["batch"], est.settings["seq_len"], est.settings["compute_dtype"]) == (8, 64, "bfloat16")


def test_a_training_block_is_adapted_to_this_machine_like_the_trainer_adapts_it(monkeypatch):
    from mathkit.training import policy

    monkeypatch.setattr(policy.Machine, "detect", classmethod(lambda cls: policy.Machine(cuda=False)))
    est = estimate_training_run("smollm2-135m", "lora", {"max_length": 128, "optim": "paged_adamw_8bit",
                                                        "bf16": True}, dtype="float32")
    # a CPU without native bf16: the trainer trains in fp32 with the un-paged optimizer
    assert est.settings["optimizer"] == "adamw_8bit" and est.settings["compute_dtype"] == "float32"


def test_a_training_block_without_a_length_or_for_inference_is_refused():
    with pytest.raises(ParamsError, match="no max_length: pass seq_len="):
        estimate_training_run("smollm2-135m", "lora", {}, device="cpu")
    with pytest.raises(ParamsError, match="estimates training"):
        estimate_training_run("smollm2-135m", "inference", {"max_length": 8}, device="cpu")


def test_estimates_text_prints_tables_or_says_why_there_is_none():
    text = estimates_text(lambda: [estimate("smollm2-135m", device="cpu"), estimate("gemma-3-270m", device="cpu")])
    assert text.count("Memory estimate:") == 2 and "gemma-3-270m" in text
    assert estimates_text(lambda: [estimate("gpt-5")]).startswith("no memory estimate: unknown model 'gpt-5'")


def test_parameter_bytes_counts_each_tensor_once_in_its_dtype():
    import torch

    from mathkit.models.memory_estimate import parameter_bytes

    embed = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embed.weight  # tied, as in SmolLM2 and Gemma-3
    model = torch.nn.Sequential(embed, torch.nn.Linear(4, 4), head)
    assert parameter_bytes(model) == (10 * 4 + 4 * 4 + 4) * 4
    assert parameter_bytes(model.to(torch.bfloat16)) == (10 * 4 + 4 * 4 + 4) * 2
