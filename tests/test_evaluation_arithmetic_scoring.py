"""The arithmetic scorer through the one evaluator: an oracle must score 100%, planted errors are
counted, thoughts and token accuracy are scored apart, breakdowns by operand lengths."""

import pytest
import torch
from torch import nn

from mathkit.data.arithmetic import generate_examples, generate_splits, make_example
from mathkit.evaluation.arithmetic_scoring import (
    ArithmeticScorer,
    operand_lengths,
    score_arithmetic,
    teacher_forced_token_accuracy,
)
from mathkit.evaluation.evaluator import evaluate_model
from mathkit.evaluation.metrics import accuracy_by
from mathkit.models.char_tokenizer import build_char_tokenizer


class OracleModel(nn.Module):
    """Looks ahead: its logits at position t put all mass on the token at t+1 (teacher forcing),
    and its generate() writes the true completion of each prompt. A scorer must rate it 100%."""

    def __init__(self, tokenizer, vocab_size, wrong=()):
        super().__init__()
        self.tok, self.vocab_size, self.wrong = tokenizer, vocab_size, set(wrong)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, **_):
        logits = torch.full((*input_ids.shape, self.vocab_size), -1e4)
        nxt = torch.roll(input_ids, -1, dims=1)
        logits.scatter_(2, nxt[..., None], 0.0)
        return type("Out", (), {"logits": logits})()

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **_):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tok.decode([i for i, m in zip(ids, mask) if m])
            a, b = prompt.removesuffix("=").split("+")
            ex = make_example(int(a), int(b), "+")
            completion = ex["completion"]
            if ex["expression"] in self.wrong:  # a deliberately wrong answer
                completion = completion.replace(f"{ex['result']}<end>", f"{ex['result'] + 1}<end>")
            rows.append(ids + self.tok(completion, add_special_tokens=False)["input_ids"][:max_new_tokens])
        width = max(map(len, rows))
        return torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows])


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def records():
    return generate_examples(120, min_digits=1, max_digits=3, seed=5)


def evaluate(model, tok, records, **kw):
    scorer = ArithmeticScorer(token_accuracy=kw.pop("token_accuracy", True))
    return evaluate_model(model, tok, records, scorer=scorer, progress=False, **kw)


def test_oracle_scores_perfect(tok, records):
    model = OracleModel(tok, len(tok))
    ev = evaluate(model, tok, records, batch_size=16)
    s = ev.summary
    assert s["accuracy"] == 1.0 and s["n"] == len(records) and s["exact_match"]["n"] == len(records)
    assert s["thought_match"]["accuracy"] == 1.0
    assert s["token_accuracy"]["accuracy"] == 1.0
    assert s["token_accuracy"]["n_tokens"] == sum(len(tok(r["completion"])["input_ids"]) for r in records)
    assert ev.failures() == [] and s["n_failures"] == 0 and s["truncated"] == 0
    assert set(s["by_digits"]) == {1, 2, 3} and sum(g["n"] for g in s["by_digits"].values()) == len(records)
    assert s["ci95"][0] > 0.96 and s["ci95"][1] == pytest.approx(1.0)
    assert [r["expression"] for r in ev.records] == [r["expression"] for r in records]  # caller's order
    assert s["settings"]["scorer"] == "arithmetic"
    longest = max(len(tok(r["completion"], add_special_tokens=False)["input_ids"]) for r in records)
    assert s["settings"]["max_new_tokens"] == longest + 8


def test_oracle_with_wrong_answers_counted(tok, records):
    wrong = {r["expression"] for r in records[:7]}
    ev = evaluate(OracleModel(tok, len(tok), wrong), tok, records, batch_size=32, token_accuracy=False)
    assert ev.summary["correct"] == len(records) - 7 and ev.summary["n_failures"] == 7
    assert {f["expression"] for f in ev.failures()} == wrong
    f = ev.failures(1)[0]
    assert {"expression", "expected", "got", "completion"} <= set(f)
    assert int(f["got"]) == int(f["expected"]) + 1 and f["completion"].startswith("<think>")
    assert ev.summary["thought_match"]["accuracy"] == 1.0  # the thoughts were right, only answers wrong
    assert ev.summary["token_accuracy"] is None
    assert list(ev.table(1)[0]) == ["expression", "expected", "got", "correct", "completion"]


def test_accuracy_by_the_pair_of_operand_lengths(tok, records):
    wrong = {r["expression"] for r in records if operand_lengths(r) == "3x1"}
    ev = evaluate(OracleModel(tok, len(tok), wrong), tok, records, batch_size=64, token_accuracy=False)
    by_pair = ev.summary["by_operand_lengths"]
    assert set(by_pair) == {f"{a}x{b}" for a in (1, 2, 3) for b in (1, 2, 3)}
    assert by_pair["3x1"]["accuracy"] == 0.0 and by_pair["3x1"]["n"] == len(wrong) > 0
    assert all(g["accuracy"] == 1.0 for k, g in by_pair.items() if k != "3x1")
    assert sum(g["n"] for g in by_pair.values()) == len(records)
    assert operand_lengths(make_example(123, 4, "+")) == "3x1"
    assert operand_lengths(make_example(0, 99, "*")) == "1x2"


def test_shifted_oracle_token_accuracy_is_low(tok, records):
    class Lagging(OracleModel):
        def forward(self, input_ids, attention_mask=None, **_):  # predicts the current token again
            logits = torch.full((*input_ids.shape, self.vocab_size), -1e4)
            logits.scatter_(2, input_ids[..., None], 0.0)
            return type("Out", (), {"logits": logits})()

    acc = teacher_forced_token_accuracy(Lagging(tok, len(tok)), tok, records, progress=False)
    assert acc["accuracy"] < 0.2


def test_score_arithmetic_rules():
    recs = [make_example(12, 5, "+"), make_example(3, 4, "+", cot=False), make_example(99, 1, "+")]
    rows = [score_arithmetic(r, c) for r, c in zip(recs, [
        "<think>2+5=7 1+0=1</think>17<end>",   # right
        "7<end>",                              # right, plain format
        "<think>9+1=10 9+0+1=10",              # unfinished thought: no answer
    ])]
    assert [r["correct"] for r in rows] == [True, True, False]
    assert [r["thought_correct"] for r in rows] == [True, None, False]
    assert rows[2]["got"] == ""
    assert score_arithmetic(make_example(1, 2, "+"), "<think>1+2=3</think>03<end>")["correct"] is False
    by = accuracy_by(rows, "n_digits")
    assert by[1]["n"] == 1 and by[2]["accuracy"] == 0.5


def test_tiny_untrained_decoder_runs_end_to_end(tok):
    from mathkit.models import build_decoder

    torch.manual_seed(0)
    model = build_decoder("small", tok, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2)
    test = generate_splits(1, 1, 24, min_digits=1, max_digits=2, ops=("+", "-", "*"), seed=1)["test"]
    ev = evaluate(model, tok, test, batch_size=12, max_new_tokens=12)
    s = ev.summary
    assert s["n"] == 24 and 0.0 <= s["accuracy"] <= 1.0
    assert 0.0 <= s["token_accuracy"]["accuracy"] < 0.5  # untrained: near chance (1/20 per token)
    assert set(s["by_op"]) == {r["op"] for r in test}
    assert len(ev.failures()) == s["n"] - s["correct"] == s["n_failures"]
    assert s["truncated"] == sum(not r["finished"] for r in ev.records)
    assert len(ev.table(3)) == 3


def test_a_leading_zero_is_a_wrong_answer():
    """``0847`` for 847 is not the exact answer: exact match compares strings, not values."""
    from mathkit.data.arithmetic import make_example
    from mathkit.evaluation.arithmetic_scoring import score_arithmetic

    record = make_example(658, 189, "+", cot=True)
    right = record["completion"]
    wrong = right.replace("</think>847", "</think>0847")
    assert score_arithmetic(record, right)["correct"] is True
    assert score_arithmetic(record, wrong)["got"] == "0847"
    assert score_arithmetic(record, wrong)["correct"] is False


# ---- formats (mathkit.data.arithmetic.formats): exact answers as each format writes them ----

class PromptOracle(OracleModel):
    """generate() writes the completion stored for each prompt (any format), or a replacement."""

    def __init__(self, tokenizer, completions: dict[str, str]):
        super().__init__(tokenizer, len(tokenizer))
        self.completions = completions

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **_):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tok.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)
            new = self.tok(self.completions[prompt], add_special_tokens=False)["input_ids"][:max_new_tokens]
            rows.append(ids + new)
        width = max(map(len, rows))
        return torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows])


@pytest.fixture(scope="module")
def hint_tok():
    from mathkit.data.arithmetic import extra_tokens

    tok = build_char_tokenizer()
    tok.add_tokens(extra_tokens(["index_hints"]))
    return tok


# a wrong answer of each format that a careless parser could take for right
NEAR_MISSES = {
    "cot": lambda r: r["completion"].replace(f"</think>{r['result']}<end>", f"</think>{str(r['result'])[::-1]}x<end>"),
    "plain": lambda r: f"0{r['result']}<end>",
    "reversed": lambda r: f"{r['result']}<end>" if str(r["result"]) != str(r["result"])[::-1] else f"{r['result']}0<end>",
    "index_hints": lambda r: f"{r['answer'].replace('a', 'b', 1)}<end>",
}


@pytest.mark.parametrize("fmt", ["cot", "plain", "reversed", "index_hints"])
def test_each_format_scores_right_answers_right_and_near_misses_wrong(fmt, hint_tok):
    from mathkit.data.arithmetic import format_records

    records = format_records(generate_examples(40, min_digits=1, max_digits=3, seed=9), fmt)
    right = {r["prompt"]: r["completion"] for r in records}
    ev = evaluate(PromptOracle(hint_tok, right), hint_tok, records, batch_size=16)
    assert ev.summary["accuracy"] == 1.0 and ev.summary["token_accuracy"]["accuracy"] == 1.0
    assert [r["expected"] for r in ev.records] == [r["answer"] for r in records]
    assert (ev.summary["thought_match"] is not None) == (fmt == "cot")

    missed = {r["prompt"]: NEAR_MISSES[fmt](r) for r in records[:10]}
    ev = evaluate(PromptOracle(hint_tok, {**right, **missed}), hint_tok, records, batch_size=16,
                  token_accuracy=False)
    assert ev.summary["correct"] == len(records) - 10
    assert {f["expression"] for f in ev.failures()} == {r["expression"] for r in records[:10]}


def test_a_reversed_answer_is_wrong_in_the_plain_format_and_right_in_the_reversed_one():
    from mathkit.data.arithmetic import format_example

    plain, rev = format_example(35, 17, "+", "plain"), format_example(35, 17, "+", "reversed")
    assert score_arithmetic(plain, "25<end>")["correct"] is False
    assert score_arithmetic(rev, "25<end>")["correct"] is True
    assert score_arithmetic(rev, "52<end>")["correct"] is False
    hints = format_example(35, 17, "+", "index_hints")
    assert score_arithmetic(hints, "b5a2<end>")["correct"] is True
    assert score_arithmetic(hints, "52<end>")["correct"] is False  # the digits without their letters
    assert score_arithmetic(hints, "a5b2<end>")["correct"] is False  # letters swapped
