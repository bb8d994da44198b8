"""Which greedy decoder evaluation should use: speed and batch invariance, measured side by side.

Rows of a batch finish at different steps. Three ways to stop paying for finished rows:

* ``generate``: transformers' ``model.generate`` on length-sorted, left-padded static batches
  (a finished row keeps its slot until the longest row ends);
* ``compact``: :func:`mathkit.evaluation.decoding.greedy_compacting`, which drops finished rows
  and their KV-cache rows after every step;
* ``continuous``: transformers' continuous batching (``model.generate_batch``, paged attention),
  which also refills freed slots with waiting prompts. It has no stop strings, so it is compared
  with the other two at EOS-only stopping.

For each: wall time, new tokens, tokens/s and the share of decode slots that produced a token;
then batch invariance: the same prompts at batch 1 and at the largest batch must give identical
completions (fp32), or the decoder is not used for headline numbers.

    python benchmarks/decoders.py --n 100 --batch-sizes 16,32,64 --threads 1,2 \\
        --save benchmarks/results/decoders_cpu
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from transcript import save_outputs  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from mathkit.data import load_math_dataset
from mathkit.data.formatting import LM_EVAL_GSM8K, STYLE_STOP_STRINGS, build_prompt
from mathkit.env import set_threads
from mathkit.evaluation.generation import generate_batched
from mathkit.evaluation.weight_layout import column_major_linears
from mathkit.evaluation.stopping import StopRule
from mathkit.models import load


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dataset", default="gsm8k_originals")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-sizes", default="32", help="comma-separated")
    ap.add_argument("--threads", default="0", help="comma-separated torch thread counts (0: default)")
    ap.add_argument("--decoders", default="generate,compact,continuous")
    ap.add_argument("--invariance-n", type=int, default=16,
                    help="prompts decoded at batch 1 and at the largest batch (0: skip)")
    ap.add_argument("--invariance-max-new-tokens", type=int, default=96,
                    help="token budget of the invariance check (batch 1 is slow)")
    ap.add_argument("--save", metavar="PREFIX")
    return ap.parse_args(argv)


def run_continuous(model, tokenizer, prompts, max_new_tokens, batch_size) -> dict:
    """transformers' continuous batching (EOS-only stopping), ``batch_size`` requests at a time,
    timed like generate_batched."""
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False,
                           eos_token_id=model.generation_config.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    # Sized for batch_size requests at a time: left to size itself on a CPU, the paged cache took
    # ~14 GB and ~15 s to set up even for a tiny model.
    blocks_per_request = -(-(max(map(len, ids)) + max_new_tokens) // 64)
    cb = ContinuousBatchingConfig(page_size=64, num_blocks=(batch_size + 1) * blocks_per_request,
                                  max_requests_per_batch=batch_size, max_batch_tokens=2048)
    t0 = time.perf_counter()
    with column_major_linears(model):  # the weight layout generate_batched decodes with on a CPU
        out = model.generate_batch(ids, generation_config=cfg, continuous_batching_config=cb,
                                   progress_bar=False, warmup=False)
    seconds = time.perf_counter() - t0
    results = [out[f"req_{i}"] for i in range(len(prompts))]
    tokens = [r.generated_tokens for r in results]
    return {"seconds": seconds, "new_tokens": sum(len(t) for t in tokens),
            "completions": [tokenizer.decode(t, skip_special_tokens=True) for t in tokens],
            "slot_use": None, "stopped_early": 0}


def run_one(model, tokenizer, prompts, decoder, batch_size, max_new_tokens, stop) -> dict:
    if decoder == "continuous":
        return run_continuous(model, tokenizer, prompts, max_new_tokens, batch_size)
    gen = generate_batched(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, add_special_tokens=False, progress=False,
                           stop=stop, decoder=decoder)
    return {"seconds": gen.seconds, "new_tokens": sum(gen.new_tokens), "completions": gen.completions,
            "slot_use": round(gen.slot_use, 3), "stopped_early": sum(gen.stopped_early)}


def main(argv=None) -> int:
    args = parse_args(argv)
    model, tokenizer = load(args.model, dtype=torch.float32)
    rows = load_math_dataset(args.dataset, n=args.n).to_list()
    prompts = [build_prompt(tokenizer, r["problem"], style=LM_EVAL_GSM8K) for r in rows]
    harness_stops = StopRule(stop_strings=STYLE_STOP_STRINGS[LM_EVAL_GSM8K], answer_end=True)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    decoders = [d.strip() for d in args.decoders.split(",") if d.strip()]
    lines = [f"{args.model}, {len(prompts)} {args.dataset} prompts (lm_eval_gsm8k style), fp32, greedy, "
             f"{args.max_new_tokens} new tokens at most; load average at start "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", "",
             f"{'decoder':<11}{'stops':<12}{'threads':>8}{'batch':>6}{'seconds':>9}{'new tok':>9}"
             f"{'tok/s':>8}{'slot use':>9}{'stopped':>8}"]
    records = []
    for threads in [int(t) for t in args.threads.split(",")]:
        used = set_threads(threads)
        for batch_size in sizes:
            for decoder in decoders:
                for stops_name, stop in (("eos", None), ("harness+ans", harness_stops)):
                    if decoder == "continuous" and stop is not None:
                        continue
                    r = run_one(model, tokenizer, prompts, decoder, batch_size, args.max_new_tokens, stop)
                    records.append({"decoder": decoder, "stops": stops_name, "threads": used,
                                    "batch": batch_size, **{k: v for k, v in r.items() if k != "completions"}})
                    lines.append(f"{decoder:<11}{stops_name:<12}{used:>8}{batch_size:>6}{r['seconds']:>9.1f}"
                                 f"{r['new_tokens']:>9}{r['new_tokens'] / r['seconds']:>8.1f}"
                                 f"{str(r['slot_use']):>9}{r['stopped_early']:>8}")
                    print(lines[-1], flush=True)
    if args.invariance_n:
        subset, big = prompts[:args.invariance_n], max(sizes)
        budget = args.invariance_max_new_tokens
        lines += ["", f"batch invariance ({len(subset)} prompts, {budget} new tokens at most, "
                      f"batch 1 vs {min(big, len(subset))}):"]
        for decoder in decoders:
            stop = None if decoder == "continuous" else harness_stops
            one = [run_one(model, tokenizer, [p], decoder, 1, budget, stop)["completions"][0] for p in subset]
            many = run_one(model, tokenizer, subset, decoder, big, budget, stop)["completions"]
            same = sum(a == b for a, b in zip(one, many))
            records.append({"decoder": decoder, "invariance": f"{same}/{len(subset)}"})
            lines.append(f"  {decoder}: {same}/{len(subset)} identical")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.save:
        save_outputs(args.save, lines, {"args": vars(args), "runs": records})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
