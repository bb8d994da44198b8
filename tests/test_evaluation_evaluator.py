"""The one evaluator: records in dataset order, summaries, JSONL, batching, pluggable scorers.

Two models: an oracle that answers each prompt with a fixed reply (so correctness, truncation and
the order of records can be checked exactly) and a tiny random Llama run through the real
``generate`` (so batching and left padding are exercised as in a real evaluation).
"""

import json
import string

import datasets
import pytest
import torch

from mathkit.errors import DataError
from mathkit.evaluation.evaluator import EvalResult, evaluate_model
from mathkit.jsonl import read_jsonl


def tiny_tokenizer():
    """Character-level fast tokenizer over printable ASCII, with BOS/EOS/pad and a chat template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + chars)},
                                         unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                  bos_token="<bos>", eos_token="<eos>")
    tok.chat_template = ("{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}\n"
                         "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    return tok


def tiny_llama(tokenizer, seed: int = 0, hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    return LlamaForCausalLM(cfg).eval()


class OracleLM(torch.nn.Module):
    """Replies to each prompt with ``replies[problem]`` + EOS, cut at ``max_new_tokens``."""

    def __init__(self, tokenizer, replies: dict[str, str]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.replies = tokenizer, replies
        self.calls = []

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, eos_token_id,
                 **_):
        self.calls.append(input_ids.shape[0])
        assert (attention_mask[:, -1] == 1).all(), "prompts must be left-padded"
        new = []
        for ids, mask in zip(input_ids, attention_mask):
            prompt = self.tok.decode(ids[mask.bool()])
            problem = next(p for p in self.replies if p in prompt)
            reply = self.tok(self.replies[problem], add_special_tokens=False)["input_ids"]
            new.append((reply + [self.tok.eos_token_id])[:max_new_tokens])
        width = max(len(r) for r in new)
        new = torch.tensor([r + [pad_token_id] * (width - len(r)) for r in new])
        return torch.cat([input_ids, new], dim=1)


def plain_prompt(row):
    return f"Question: {row['problem']}\nAnswer:"


ROWS = [
    {"id": "a", "problem": "What is 5+7?", "answer": "12", "source": "s1", "category": "add",
     "template": "t1"},
    {"id": "b", "problem": "A long one: Tom has 3 boxes of 4 pens. How many pens are there?",
     "answer": "12", "source": "s1", "category": "mul", "template": "t2"},
    {"id": "c", "problem": "What is 10-3?", "answer": "7", "source": "s2", "category": "sub",
     "template": "t3"},
    {"id": "d", "problem": "What is half of 1?", "answer": "1/2", "source": "s2", "category": "div",
     "template": "t4"},
    {"id": "e", "problem": "What is 2*2?", "answer": "4", "source": "s2", "category": "mul",
     "template": "t5"},
    {"id": "f", "problem": "Is the sequence periodic?", "answer": "The sequence is not periodic",
     "source": "s2", "category": "prose", "template": "t6"},
]
REPLIES = {
    "What is 5+7?": "5+7=12\n#### 12",                  # strict and lenient right
    "A long one: Tom has 3 boxes of 4 pens. How many pens are there?": "The answer is 12.",  # lenient only
    "What is 10-3?": "I do not know.",                  # unparsable
    "What is half of 1?": "#### 0.5",                   # equivalent, not identical
    "What is 2*2?": "2*2 is " + "very " * 20 + "4",     # cut off by max_new_tokens: wrong
    "Is the sequence periodic?": "No, it is not periodic.",  # ungradable gold: not scored
}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_evaluate_model_scores_and_keeps_dataset_order(tok, tmp_path):
    model = OracleLM(tok, REPLIES)
    path = tmp_path / "out" / "records.jsonl"
    result = evaluate_model(model, tok, datasets.Dataset.from_list(ROWS), prompt_fn=plain_prompt,
                            batch_size=2, max_new_tokens=40, records_path=path, progress=False)
    assert isinstance(result, EvalResult)
    assert model.calls == [2, 2, 2]
    assert [r["id"] for r in result.records] == ["a", "b", "c", "d", "e", "f"]
    assert [r["correct"] for r in result.records] == [True, True, False, True, False, None]
    assert [r["correct_strict"] for r in result.records] == [True, False, False, True, False, None]
    assert [r["gradable"] for r in result.records] == [True] * 5 + [False]
    assert [r["finished"] for r in result.records] == [True, True, True, True, False, True]
    assert result.records[4]["new_tokens"] == 40
    assert result.records[3]["extracted"] == "0.5" and result.records[3]["gold"] == "1/2"
    assert result.records[1]["template"] == "t2" and result.records[1]["source"] == "s1"

    s = result.summary
    assert (s["n"], s["correct"], s["accuracy"]) == (5, 3, 0.6)   # the ungradable one left out
    assert s["n_examples"] == 6 and s["ungradable"] == 1 and s["ungradable_ids"] == ["f"]
    assert s["strict"]["correct"] == 2 and s["lenient"]["correct"] == 3
    assert s["ci95"][0] < 0.6 < s["ci95"][1]
    # the cut-off completion has no complete sentence: nothing to extract
    assert s["unparsable"] == 2 and s["unparsable_strict"] == 3 and s["truncated"] == 1
    assert s["truncated_correct"] == {"lenient": 0, "strict": 0}
    assert s["finished_only"]["lenient"]["n"] == 4 and s["finished_only"]["lenient"]["correct"] == 3
    assert s["by_category"]["mul"] == {"accuracy": 0.5, "n": 2, "correct": 1,
                                       "ci95": s["by_category"]["mul"]["ci95"]}
    assert "prose" not in s["by_category"] and s["by_source"]["s2"]["n"] == 3
    assert s["new_tokens"] == sum(r["new_tokens"] for r in result.records)
    assert s["tokens_per_second"] > 0 and s["seconds"] >= s["generation_seconds"]
    assert s["settings"]["prompt_fn"] == "plain_prompt" and s["settings"]["scorer"] == "math_answer"
    json.dumps(s)  # JSON-ready for results.json

    assert read_jsonl(path) == result.records
    assert [p.name for p in path.parent.iterdir()] == ["records.jsonl"]  # no temp file left


def test_evaluate_model_accepts_list_of_dicts_without_optional_columns(tok):
    rows = [{"problem": "What is 5+7?", "answer": 12}]
    result = evaluate_model(OracleLM(tok, REPLIES), tok, rows, prompt_fn=plain_prompt,
                            progress=False)
    assert result.records[0]["id"] == 0 and result.records[0]["gold"] == "12"
    assert result.summary["by_source"] == {"unknown": result.summary["lenient"]}
    assert result.summary["settings"]["max_new_tokens"] == 256  # the scorer's default budget


def test_failures_and_table(tok):
    result = evaluate_model(OracleLM(tok, REPLIES), tok, ROWS, prompt_fn=plain_prompt,
                            max_new_tokens=40, progress=False)
    assert [r["id"] for r in result.failures()] == ["c", "e"]  # ungraded "f" is no failure
    assert [r["id"] for r in result.failures(1)] == ["c"]
    table = result.table(2, max_chars=5)
    assert list(table[0]) == ["id", "gold", "extracted", "correct", "finished", "completion"]
    assert table[1]["completion"] == "The a" and result.accuracy == 0.6


def test_evaluate_model_rejects_bad_datasets(tok):
    with pytest.raises(DataError, match="answer"):
        evaluate_model(OracleLM(tok, REPLIES), tok, [{"problem": "x"}], prompt_fn=plain_prompt)
    with pytest.raises(DataError, match="empty"):
        evaluate_model(OracleLM(tok, REPLIES), tok, [], prompt_fn=plain_prompt)


def test_real_generate_batched_equals_one_at_a_time(tok):
    """Left padding and the KV cache must not change greedy completions."""
    model = tiny_llama(tok)
    rows = [dict(r) for r in ROWS]
    kw = dict(prompt_fn=plain_prompt, max_new_tokens=12, progress=False)
    batched = evaluate_model(model, tok, rows, batch_size=5, **kw)
    single = evaluate_model(model, tok, rows, batch_size=1, **kw)
    assert [r["completion"] for r in batched.records] == [r["completion"] for r in single.records]
    assert all(0 < r["new_tokens"] <= 12 for r in batched.records)
    assert batched.summary["n"] == 5 and batched.summary["tokens_per_second"] > 0


def test_chat_prompts_starting_with_bos_get_no_second_bos():
    from tokenizers import processors

    tok = tiny_tokenizer()  # one that adds BOS itself, like Llama/Gemma tokenizers
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)])
    assert tok("a")["input_ids"][0] == tok.bos_token_id
    seen = []

    class Spy(OracleLM):
        def generate(self, input_ids, attention_mask, **kw):
            seen.extend(ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask))
            return super().generate(input_ids, attention_mask, **kw)

    def chat_prompt(row):
        return tok.apply_chat_template([{"role": "user", "content": row["problem"]}],
                                       tokenize=False, add_generation_prompt=True)

    evaluate_model(Spy(tok, REPLIES), tok, ROWS[:2], prompt_fn=chat_prompt, progress=False)
    assert all(ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id for ids in seen)


RAMBLING_REPLIES = {
    "What is 5+7?": "5+7=12\n#### 12\n\nQuestion: What is 1+1?\n#### 2",   # answer, then a new problem
    "What is 10-3?": "10-3=7. Question: and 8?",                           # a stop string, no answer line
    "What is 2*2?": "2*2=4\n#### 4",                                       # ends by itself (EOS)
}


def test_math_answers_stop_after_the_answer_line_by_default(tok):
    rows = [r for r in ROWS if r["problem"] in RAMBLING_REPLIES]
    kw = dict(prompt_fn=plain_prompt, max_new_tokens=80, progress=False)
    result = evaluate_model(OracleLM(tok, RAMBLING_REPLIES), tok, rows, **kw)
    assert [r["completion"] for r in result.records] == ["5+7=12\n#### 12", "10-3=7. Question: and 8?",
                                                         "2*2=4\n#### 4"]
    assert [r["stopped_early"] for r in result.records] == [True, False, False]
    s = result.summary
    assert s["stopped_early"] == 1 and s["decoder"] == "generate"  # the oracle has no cache
    assert s["settings"]["stop_at_answer"] is True and s["settings"]["stop_strings"] == []

    full = evaluate_model(OracleLM(tok, RAMBLING_REPLIES), tok, rows, stop_at_answer=False, **kw)
    assert full.records[0]["completion"] == RAMBLING_REPLIES["What is 5+7?"]
    assert [r["extracted"] for r in full.records] == [r["extracted"] for r in result.records]

    harness = evaluate_model(OracleLM(tok, RAMBLING_REPLIES), tok, rows, style="lm_eval_gsm8k",
                             stop_at_answer=False, **kw)
    assert [r["completion"] for r in harness.records][:2] == ["5+7=12\n#### 12\n\n", "10-3=7. "]
    assert harness.summary["settings"]["stop_strings"] == ["Question:", "</s>", "<|im_end|>"]
    assert harness.summary["stopped_early"] == 2


def test_the_compacting_decoder_scores_like_generate(tok):
    model = tiny_llama(tok, seed=5)
    kw = dict(prompt_fn=plain_prompt, max_new_tokens=12, progress=False, batch_size=4,
              stop_strings=["e"])
    compact = evaluate_model(model, tok, ROWS, **kw)
    static = evaluate_model(model, tok, ROWS, decoder="generate", **kw)
    assert compact.summary["decoder"] == "compact" and static.summary["decoder"] == "generate"
    assert compact.records == static.records
    assert compact.summary["slot_use"] == 1.0 and compact.summary["stopped_early"] > 0


def test_answer_end_stopping_follows_the_scorers_own_attribute():
    from mathkit.evaluation.answer_scoring import MathAnswerScorer
    from mathkit.evaluation.arithmetic_scoring import ArithmeticScorer
    from mathkit.evaluation.evaluator import stop_rule

    assert stop_rule(MathAnswerScorer(), "gsm8k", None, None).answer_end is True
    assert stop_rule(ArithmeticScorer(), "gsm8k", None, None).answer_end is False
    assert stop_rule(MathAnswerScorer(), "gsm8k", None, False).answer_end is False  # the caller decides last

    class ReadsEverything(MathAnswerScorer):
        stops_at_answer = False  # e.g. a scorer that also grades what follows the answer

    assert stop_rule(ReadsEverything(), "gsm8k", None, None).answer_end is False
