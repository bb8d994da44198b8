"""Batched greedy generation: the one way every model in mathkit is sampled for evaluation.

One prompt at a time runs at ~15 tokens/s for SmolLM2-135M on this CPU, batches of 50-100 at
~115-250 (docs/pitfalls.md). So prompts are sorted by length (little padding), left-padded
(so new tokens line up), generated in batches with the KV cache where the model has one, and
returned in the caller's order.

On a CPU shared with other busy processes, torch's default of one thread per core can be several
times slower than ``torch.set_num_threads(1)`` (measured here under load ~4 on 2 cores: batch 16
decode 11 vs 70 tokens/s): OpenMP threads that lose their core stall the others at every op.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList

from mathkit.evaluation.calculator import CalculatorLogitsProcessor

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    completions: list[str]      # decoded new text, in the order of the prompts
    new_tokens: list[int]       # number of generated tokens per prompt (up to and including EOS)
    seconds: float              # wall time of all generate calls
    finished: list[bool] = field(default_factory=list)  # stopped at an end token (not cut off)
    calculator_uses: int = 0    # results written by the calculator (0 when it is off)

    @property
    def tokens_per_second(self) -> float:
        return sum(self.new_tokens) / self.seconds if self.seconds > 0 else 0.0


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a reply: the tokenizer's EOS plus the model's generation-config EOS
    list (chat models such as Gemma 3 end turns with ``<end_of_turn>``, not ``<eos>``)."""
    ids: list[int] = []
    gen_cfg = getattr(model, "generation_config", None)
    cfg_eos = getattr(gen_cfg, "eos_token_id", None)
    for value in (tokenizer.eos_token_id, cfg_eos):
        for i in (value if isinstance(value, (list, tuple)) else [value]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids


def _cut_at_stop(row: list[int], stop_set: set[int], tokenizer,
                 skip_special_tokens: bool) -> tuple[str, int, bool]:
    """(text, tokens up to and including the first stop token, whether it stopped there)."""
    n = next((j + 1 for j, t in enumerate(row) if t in stop_set), len(row))
    stopped = n > 0 and row[n - 1] in stop_set
    return tokenizer.decode(row[:n], skip_special_tokens=skip_special_tokens), n, stopped


def _autocast(device: str, bf16: bool):
    if bf16:
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return torch.autocast(device_type=device, enabled=False)


def _generate_batch(model, tokenizer, enc, *, max_new_tokens: int, stop_ids: list[int], bf16: bool,
                    calculator: bool):
    """One greedy ``generate`` call on a left-padded batch: (output ids, calculator results)."""
    extra = {}
    if calculator:
        calc = CalculatorLogitsProcessor(tokenizer, prompt_length=enc["input_ids"].shape[1])
        extra["logits_processor"] = LogitsProcessorList([calc])
    with _autocast(enc["input_ids"].device.type, bf16):
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids or None,
                             **extra)
    return out, calc.uses if calculator else 0


@torch.no_grad()
def generate_batched(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = 256,
    batch_size: int = 32,
    bf16: bool = False,
    skip_special_tokens: bool = True,
    add_special_tokens: bool = True,
    progress: bool = True,
    desc: str = "generate",
    calculator: bool = False,
) -> GenerationResult:
    """Greedy-decode ``prompts`` in length-sorted, left-padded batches; stop at EOS per sequence.

    ``calculator``: write the result of every ``expression =`` the model generates
    (:mod:`mathkit.evaluation.calculator`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    stop_ids = stop_token_ids(model, tokenizer)
    stop_set = set(stop_ids)

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    completions: list[str] = [""] * len(prompts)
    counts: list[int] = [0] * len(prompts)
    finished: list[bool] = [False] * len(prompts)
    seconds = 0.0
    calculator_uses = 0
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt")
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=add_special_tokens).to(device)
            t0 = time.perf_counter()
            out, uses = _generate_batch(model, tokenizer, enc, max_new_tokens=max_new_tokens,
                                        stop_ids=stop_ids, bf16=bf16, calculator=calculator)
            seconds += time.perf_counter() - t0
            calculator_uses += uses
            new = out[:, enc["input_ids"].shape[1]:]
            for row, i in zip(new.tolist(), idx):
                completions[i], counts[i], finished[i] = _cut_at_stop(
                    row, stop_set, tokenizer, skip_special_tokens)
            bar.update(len(idx))
    finally:
        bar.close()
        tokenizer.padding_side = old_side
    return GenerationResult(completions=completions, new_tokens=counts, seconds=seconds,
                            finished=finished, calculator_uses=calculator_uses)
