"""A tiny random Llama (tied embeddings, like SmolLM2) and a small BPE tokenizer for LoRA tests."""

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mathkit.models import save

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def word_problems(n=48):
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append({"prompt": f"Question: Tom has {a} apples and buys {b} more. How many?\nAnswer:",
                     "completion": f" {a} + {b} = {a + b}\n#### {a + b}"})
    return rows


def build_tokenizer():
    corpus = [r["prompt"] + r["completion"] for r in word_problems()]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<unk>", "<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")


def save_tiny_llama(folder, tokenizer, hidden=32):
    """A tiny random Llama saved to ``folder`` so that it can be reloaded fresh."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    save(LlamaForCausalLM(config), tokenizer, folder)
    return folder


def load_base(folder):
    return LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
