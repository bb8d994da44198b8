"""Digit arithmetic with a written-out chain of thought (or another format): the data of the small
models of notebooks 01 and 04.

==============  ===============================================================================
module          holds
==============  ===============================================================================
steps           the column steps of ``a+b``, ``a-b``, ``a*b`` (the format is described there)
records         one example as a record (prompt, ``<think>`` trace, answer, ``<end>``), parsing a
                completion back, token counts
formats         the same example written other ways: plain, reversed answer, index hints
expressions     a user's expression checked and turned into a prompt (solve/chat)
sampling        drawing expressions: operand lengths uniform, splits fixed by a hash bucket
generation      record sets: examples, train/val/test splits, sets by operand length
loading         evaluation records from a spec (``arithmetic:1-3:+``) or a JSONL file
problems        the same expressions as unified math problems (``load_math_dataset("arithmetic")``)
==============  ===============================================================================

The names below are the public API; import them from ``mathkit.data.arithmetic``.
"""

from mathkit.data.arithmetic.expressions import parse_expression, validate_expression
from mathkit.data.arithmetic.formats import (FORMATS, answer_text, expected_answer, extra_tokens, format_example,
                                             format_records, hinted)
from mathkit.data.arithmetic.generation import generate_examples, generate_length_sets, generate_splits
from mathkit.data.arithmetic.loading import load_arithmetic_records, parse_arithmetic_spec
from mathkit.data.arithmetic.records import check_fits, count_tokens, make_example, parse_completion
from mathkit.data.arithmetic.sampling import expression_space_size, sample_expressions, split_of
from mathkit.data.arithmetic.steps import OPS, addition_steps, apply_op, multiplication_steps, subtraction_steps

__all__ = [
    "FORMATS", "OPS", "addition_steps", "answer_text", "apply_op", "check_fits", "count_tokens",
    "expected_answer", "expression_space_size", "extra_tokens", "format_example", "format_records",
    "generate_examples", "generate_length_sets", "generate_splits", "hinted", "load_arithmetic_records",
    "make_example", "multiplication_steps", "parse_arithmetic_spec", "parse_completion", "parse_expression",
    "sample_expressions", "split_of", "subtraction_steps", "validate_expression",
]
