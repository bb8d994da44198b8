"""Evaluation: batched generation, answer extraction and checking, metrics with intervals, the
calculator, and the evaluator that notebooks and the CLI share."""
