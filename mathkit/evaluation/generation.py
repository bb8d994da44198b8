"""Batched greedy generation: the one way every model in mathkit is sampled for evaluation.

One prompt at a time runs at ~15 tokens/s for SmolLM2-135M on this CPU, batches of 50-100 at
~115-250 (docs/pitfalls.md). So prompts are sorted by length (little padding), left-padded
(so new tokens line up), generated in batches with the KV cache where the model has one, and
returned in the caller's order.

On a CPU shared with other busy processes, torch's default of one thread per core can be several
times slower than ``torch.set_num_threads(1)`` (measured here under load ~4 on 2 cores: batch 16
decode 11 vs 70 tokens/s): OpenMP threads that lose their core stall the others at every op.

Three decoders, the same greedy tokens per row: ``"compact"``
(:func:`mathkit.evaluation.decoding.greedy_compacting`: finished rows leave the batch, the default
for transformers causal LMs) and ``"generate"`` (``model.generate``: every row keeps its slot until
the longest ends; used with the calculator, whose per-row state needs fixed rows, and for models
without a ``DynamicCache``), and ``"external"`` for a model that runs outside torch (an ONNX
Runtime session, llama.cpp) and decodes a batch itself: such a model has
``greedy_rows(input_ids, attention_mask, *, max_new_tokens, stop_ids, stopper) -> (rows, slots)``,
the contract of :func:`~mathkit.evaluation.decoding.greedy_compacting`, and a ``device``. A
:class:`~mathkit.evaluation.stopping.StopRule` ends completions at stop strings or after their
final answer, in all three.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList, StoppingCriteriaList

from mathkit.evaluation.calculator import CalculatorLogitsProcessor
from mathkit.evaluation.decoding import greedy_compacting, supports_compacting
from mathkit.evaluation.stopping import RowStopper, StopRule, StopRuleCriteria
from mathkit.evaluation.weight_layout import column_major_linears

DECODERS = ("auto", "compact", "generate", "external")

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    completions: list[str]      # decoded new text, in the order of the prompts
    new_tokens: list[int]       # number of generated tokens per prompt (up to and including EOS)
    seconds: float              # wall time of all generate calls
    finished: list[bool] = field(default_factory=list)  # ended (stop token or stop rule), not cut off
    calculator_uses: int = 0    # results written by the calculator (0 when it is off)
    stopped_early: list[bool] = field(default_factory=list)  # ended by the stop rule, not a stop token
    decode_slots: int = 0       # row-steps computed after the prefills (padding slots included)
    decoder: str = "generate"   # the decoder that ran: compact or generate

    @property
    def slot_use(self) -> float:
        """Share of decode slots that produced a token of some row (1.0: no padding waste)."""
        useful = sum(max(0, n - 1) for n in self.new_tokens)  # the prefill writes each first token
        return useful / self.decode_slots if self.decode_slots else 1.0

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


def _finish_row(row: list[int], stop_set: set[int], tokenizer, rule: StopRule,
                skip_special_tokens: bool) -> tuple[str, int, bool, bool]:
    """(text, tokens up to the end, finished, ended by the stop rule) of one row's new tokens.

    The row is cut after its first stop token, and its text where the rule ends it."""
    n = next((j + 1 for j, t in enumerate(row) if t in stop_set), len(row))
    at_stop_token = n > 0 and row[n - 1] in stop_set
    text = tokenizer.decode(row[:n], skip_special_tokens=skip_special_tokens)
    text, by_rule = rule.apply(text)  # also where a model ignored the stopping criteria
    return text, n, at_stop_token or by_rule, by_rule


def _weight_layout(model, decoder: str, device):
    """Column-major linear weights while a torch model decodes on the CPU (weight_layout)."""
    if decoder == "external" or device.type != "cpu":
        return nullcontext()
    return column_major_linears(model)


def _autocast(device: str, bf16: bool):
    if bf16:
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return torch.autocast(device_type=device, enabled=False)


def _generate_batch(model, tokenizer, enc, *, max_new_tokens: int, stop_ids: list[int],
                    calculator: bool, rule: StopRule) -> tuple[list[list[int]], int, int]:
    """One greedy ``generate`` call on a left-padded batch: (new ids per row, calculator
    results, decode slots)."""
    extra = {}
    width = enc["input_ids"].shape[1]
    if calculator:
        calc = CalculatorLogitsProcessor(tokenizer, prompt_length=width)
        extra["logits_processor"] = LogitsProcessorList([calc])
    criteria = StopRuleCriteria(rule, tokenizer, width)
    if rule.active:
        extra["stopping_criteria"] = StoppingCriteriaList([criteria])
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids or None,
                         **extra)
    new = out[:, width:]
    slots = new.shape[0] * max(0, new.shape[1] - 1)
    rows = new.tolist()
    for i, length in criteria.lengths.items():  # drop the padding after a rule-ended row
        rows[i] = rows[i][:length]
    return rows, calc.uses if calculator else 0, slots


def _compact_batch(model, tokenizer, enc, *, max_new_tokens: int, stop_ids: list[int],
                   calculator: bool, rule: StopRule) -> tuple[list[list[int]], int, int]:
    """The compacting loop on a left-padded batch (never with the calculator: choose_decoder)."""
    stopper = RowStopper(rule, tokenizer) if rule.active else None
    rows, slots = greedy_compacting(model, enc["input_ids"], enc["attention_mask"],
                                    max_new_tokens=max_new_tokens, stop_ids=stop_ids, stopper=stopper)
    return rows, 0, slots


def _external_batch(model, tokenizer, enc, *, max_new_tokens: int, stop_ids: list[int],
                    calculator: bool, rule: StopRule) -> tuple[list[list[int]], int, int]:
    """A batch decoded by a model outside torch (module doc: ``greedy_rows``)."""
    stopper = RowStopper(rule, tokenizer) if rule.active else None
    rows, slots = model.greedy_rows(enc["input_ids"], enc["attention_mask"], max_new_tokens=max_new_tokens,
                                    stop_ids=stop_ids, stopper=stopper)
    return rows, 0, slots


_DECODE = {"compact": _compact_batch, "generate": _generate_batch, "external": _external_batch}


def is_external(model) -> bool:
    """A model that decodes outside torch (ONNX Runtime, llama.cpp): it has ``greedy_rows``."""
    return callable(getattr(model, "greedy_rows", None))


def choose_decoder(model, decoder: str, calculator: bool) -> str:
    """The decoder that runs: ``auto`` is ``compact`` where the model supports it and the
    calculator is off."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; decoders are {list(DECODERS)}")
    if is_external(model):
        if calculator:
            raise ValueError(f"the calculator runs inside torch's generate; {type(model).__name__} "
                             "decodes outside torch")
        if decoder not in ("auto", "external"):
            raise ValueError(f"{type(model).__name__} decodes outside torch: use decoder='auto' or 'external'")
        return "external"
    if decoder == "external":
        raise ValueError(f"{type(model).__name__} has no greedy_rows: use decoder='auto'")
    if decoder == "compact" and calculator:
        raise ValueError("the calculator needs decoder='generate' (its state is kept per batch row)")
    if decoder == "compact" and not supports_compacting(model):
        raise ValueError(f"{type(model).__name__} does not take a DynamicCache: use decoder='generate'")
    if decoder == "auto":
        return "compact" if not calculator and supports_compacting(model) else "generate"
    return decoder


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
    stop: StopRule | None = None,
    decoder: str = "auto",
) -> GenerationResult:
    """Greedy-decode ``prompts`` in length-sorted, left-padded batches; stop at EOS per sequence.

    ``calculator``: write the result of every ``expression =`` the model generates
    (:mod:`mathkit.evaluation.calculator`). ``stop``: also end completions at stop strings or
    after their final answer (:class:`~mathkit.evaluation.stopping.StopRule`). ``decoder``:
    ``auto`` (compact where possible), ``compact`` or ``generate`` (module doc)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rule = stop or StopRule()
    decoder = choose_decoder(model, decoder, calculator)
    if decoder != "external":
        model.eval()
    device = model.device if decoder == "external" else next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    stop_ids = stop_token_ids(model, tokenizer)
    stop_set = set(stop_ids)

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    completions, counts = [""] * len(prompts), [0] * len(prompts)
    finished, by_rule = [False] * len(prompts), [False] * len(prompts)
    seconds, calculator_uses, slots = 0.0, 0, 0
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt")
    try:
        with _weight_layout(model, decoder, device):
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                add_special_tokens=add_special_tokens).to(device)
                t0 = time.perf_counter()
                with _autocast(device.type, bf16):
                    new, uses, n_slots = _DECODE[decoder](model, tokenizer, enc, max_new_tokens=max_new_tokens,
                                                          stop_ids=stop_ids, calculator=calculator, rule=rule)
                seconds += time.perf_counter() - t0
                calculator_uses += uses
                slots += n_slots
                for row, i in zip(new, idx):
                    completions[i], counts[i], finished[i], by_rule[i] = _finish_row(
                        row, stop_set, tokenizer, rule, skip_special_tokens)
                bar.update(len(idx))
    finally:
        bar.close()
        tokenizer.padding_side = old_side
    return GenerationResult(completions=completions, new_tokens=counts, seconds=seconds,
                            finished=finished, calculator_uses=calculator_uses,
                            stopped_early=by_rule, decode_slots=slots, decoder=decoder)
