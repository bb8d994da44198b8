"""Does stopping at the answer end change what is scored? Rescore real completions to find out.

Evaluation stops a math completion at the first newline after a ``#### n`` or boxed answer line
(:mod:`mathkit.evaluation.stopping`). That is safe only if the extracted answers (lenient and
strict) and their correctness are the same for the cut text as for the full one. This script
takes the records of earlier evaluations (full completions, generated without early stopping),
cuts each where the rule would have stopped generation, rescores both, and counts the rows that
were cut, the ones whose answer or correctness changed (listed), and the cut-off-at-the-limit
rows that would have ended instead.

    python benchmarks/answer_end_rescoring.py reports/00_base_model_eval/records/*.jsonl
"""

from __future__ import annotations

import argparse
import sys

from mathkit.evaluation.answer_scoring import score_completion
from mathkit.evaluation.stopping import StopRule
from mathkit.jsonl import read_jsonl

FIELDS = ("extracted", "correct", "extracted_strict", "correct_strict")


def rescore(path: str, rule: StopRule) -> dict:
    counts = {"rows": 0, "cut": 0, "changed": 0, "truncated_now_finished": 0}
    for record in read_jsonl(path):
        if "completion" not in record or "gold" not in record:
            continue
        counts["rows"] += 1
        text, finished = record["completion"] or "", record.get("finished", True)
        cut, stopped = rule.apply(text)
        if not stopped:
            continue
        counts["cut"] += 1
        counts["truncated_now_finished"] += not finished
        before = score_completion(text, record["gold"], finished=finished)
        after = score_completion(cut, record["gold"], finished=True)
        if any(before[f] != after[f] for f in FIELDS):
            counts["changed"] += 1
            print(f"  changed: {path} id={record.get('id')} {[before[f] for f in FIELDS]} -> "
                  f"{[after[f] for f in FIELDS]}")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", help="evaluation records (JSONL with completion and gold)")
    args = ap.parse_args(argv)
    rule, total = StopRule(answer_end=True), {}
    for path in args.records:
        counts = rescore(path, rule)
        print(f"{path}: {counts}")
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    print(f"total: {total}")
    return 1 if total.get("changed") else 0


if __name__ == "__main__":
    sys.exit(main())
