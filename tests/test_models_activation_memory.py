"""The activation formula against what autograd really keeps: every tensor saved for backward in
one forward pass of tiny models of each family, full and LoRA, with and without padding."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mathkit.models import MathDecoderConfig, MathDecoderForCausalLM
from mathkit.models.activation_memory import activation_bytes, kv_cache_bytes
from mathkit.models.architectures import KNOWN, architecture

pytestmark = pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")  # peft's old names

SEQ = 40


def _saved_bytes(model, batch: int) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward pass (each storage once,
    parameters left out): what the estimate calls activations. Batches of more than one sequence
    carry padding, as training batches do."""
    torch.manual_seed(0)
    ids = torch.randint(0, 20, (batch, SEQ))
    mask = torch.ones(batch, SEQ, dtype=torch.long)
    if batch > 1:
        mask[0, :5] = 0
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, attention_mask=mask)
    return sum(kept.values())


TINY = {  # three blocks of each family, GQA where the family has it
    "llama": ("llama", dict(num_key_value_heads=2, intermediate_size=160)),
    "gemma3": ("gemma3_text", dict(num_key_value_heads=2, head_dim=32, intermediate_size=160, sliding_window=1000)),
    "gpt_neox": ("gpt_neox", dict(intermediate_size=256, rotary_pct=0.25, tie_word_embeddings=False)),
}


def _tiny(family: str):
    model_type, options = TINY[family]
    config = AutoConfig.for_model(model_type, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                  vocab_size=50, **options)
    torch.manual_seed(0)
    return config, AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")


def _with_lora(model, arch, dropout: float):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, lora_dropout=dropout, target_modules=[
        lin.name for lin in arch.lora_targets("all-linear")]))
    model.enable_input_require_grads()  # as k-bit preparation and checkpointing do: every block keeps its part
    return model


def _check_activations(config, model, method: str, batch: int, dropout: float = 0.1, tolerance: float = 0.02):
    arch = architecture(config)
    if method == "lora":
        model = _with_lora(model, arch, dropout)
    model.train()
    measured = _saved_bytes(model, batch)
    targets = arch.lora_targets("all-linear") if method == "lora" else ()
    predicted = activation_bytes(arch, method=method, batch=batch, seq_len=SEQ, p=4, targets=targets, rank=4,
                                 dropout=dropout, device="cpu")
    assert predicted == pytest.approx(measured, rel=tolerance), (measured, predicted)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("family", sorted(TINY))
def test_activations_match_what_autograd_keeps(family, method, batch):
    config, model = _tiny(family)
    _check_activations(config, model, method, batch)


def test_activations_of_lora_without_dropout():
    config, model = _tiny("llama")
    _check_activations(config, model, "lora", 3, dropout=0.0)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("options", [{}, {"norm": "layernorm", "mlp": "gelu"}, {"positional_encoding": "nope"},
                                     {"positional_encoding": "alibi"}, {"positional_encoding": "learned"},
                                     {"pe_layers": [0, 2]}])
def test_small_decoder_activations_match_what_autograd_keeps(options, method, batch):
    torch.manual_seed(0)
    config = MathDecoderConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                               vocab_size=20, max_position_embeddings=64, **options)
    _check_activations(config, MathDecoderForCausalLM(config), method, batch)


def test_checkpointing_keeps_block_inputs_and_one_block():
    arch = KNOWN["smollm2-135m"]
    plain = activation_bytes(arch, method="full", batch=2, seq_len=256, p=2)
    checkpointed = activation_bytes(arch, method="full", batch=2, seq_len=256, p=2, checkpointing=True)
    per_block = (plain - checkpointed) / (2 * 256 * (arch.layers - 1))
    assert checkpointed < plain / 10 and per_block > arch.hidden * 2  # a block keeps far more than its input


def test_lora_dropout_masks_are_bytes_on_cuda_and_floats_on_the_cpu():
    arch = KNOWN["smollm2-135m"]
    targets = arch.lora_targets("all-linear")
    settings = dict(method="lora", batch=1, seq_len=128, p=4, targets=targets, rank=16)
    cpu = activation_bytes(arch, dropout=0.1, device="cpu", **settings)
    cuda = activation_bytes(arch, dropout=0.1, device="cuda", **settings)
    plain = activation_bytes(arch, dropout=0.0, device="cpu", **settings)
    assert plain < cuda < cpu


def test_kv_cache_counts_keys_and_values_of_every_layer():
    arch = KNOWN["tinyllama-1.1b"]
    assert kv_cache_bytes(arch, batch=3, seq_len=100, p=2) == 2 * 3 * 4 * 64 * 22 * 100 * 2
