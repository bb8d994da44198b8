"""The compacting decode loop writes, row by row, exactly what ``model.generate`` greedy writes,
whatever rows share its batch, while finished rows leave the batch."""

import pytest
import torch

from mathkit.evaluation.decoding import greedy_compacting, supports_compacting
from tests.test_evaluation_evaluator import OracleLM, tiny_llama, tiny_tokenizer

PROMPTS = ["Question: What is 5+7?\nAnswer:", "Q: 1+1?\nA:", "Question: A long one about pens?\nAnswer:",
           "Q: 10-3?\nA:", "Q: half of 1?\nA:", "Tell me: 3*4", "x", "Question: pens cost $3 each."]


@pytest.fixture(scope="module")
def tok():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(tok, seed=11, hidden=48)


def _stop_ids(tok):
    """EOS plus two common characters, so that rows end at different steps."""
    return [tok.eos_token_id] + tok.convert_tokens_to_ids(["e", "7"])


def _generate_rows(model, tok, prompts, max_new_tokens, stop_ids):
    """Reference: model.generate on the same batch, each row cut after its first stop token."""
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tok.pad_token_id, eos_token_id=stop_ids)
    rows = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        n = next((j + 1 for j, t in enumerate(row) if t in stop_ids), len(row))
        rows.append(row[:n])
    return rows


def test_compacting_loop_matches_generate_row_by_row(model, tok):
    stop_ids = _stop_ids(tok)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    rows, slots = greedy_compacting(model, enc["input_ids"], enc["attention_mask"],
                                    max_new_tokens=24, stop_ids=stop_ids)
    assert rows == _generate_rows(model, tok, PROMPTS, 24, stop_ids)
    lengths = [len(r) for r in rows]
    assert len(set(lengths)) > 1, "rows should end at different steps for this test to bite"
    # finished rows left the batch: one slot per row and step while the row was unfinished
    assert slots == sum(n - 1 for n in lengths)


def test_rows_do_not_depend_on_their_batch_in_fp32(model, tok):
    stop_ids = _stop_ids(tok)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    together, _ = greedy_compacting(model, enc["input_ids"], enc["attention_mask"],
                                    max_new_tokens=20, stop_ids=stop_ids)
    for prompt, row in zip(PROMPTS, together):
        one = tok([prompt], return_tensors="pt")
        alone, _ = greedy_compacting(model, one["input_ids"], one["attention_mask"],
                                     max_new_tokens=20, stop_ids=stop_ids)
        assert alone[0] == row


class _StopAfter:
    """A stopper that ends a row after n tokens: the loop must drop it there."""

    def __init__(self, n):
        self.n = n

    def stopped(self, tokens):
        return len(tokens) >= self.n


def test_a_stopper_ends_rows_and_max_new_tokens_caps_them(model, tok):
    enc = tok(PROMPTS[:3], return_tensors="pt", padding=True)
    rows, slots = greedy_compacting(model, enc["input_ids"], enc["attention_mask"],
                                    max_new_tokens=9, stop_ids=[], stopper=_StopAfter(5))
    assert [len(r) for r in rows] == [5, 5, 5] and slots == 3 * 4
    rows, _ = greedy_compacting(model, enc["input_ids"], enc["attention_mask"],
                                max_new_tokens=3, stop_ids=[])
    assert [len(r) for r in rows] == [3, 3, 3]
    assert rows == _generate_rows(model, tok, PROMPTS[:3], 3, [])


def test_only_models_taking_a_dynamic_cache_are_compacted(model, tok):
    assert supports_compacting(model)
    assert not supports_compacting(OracleLM(tok, {}))


def test_models_defined_outside_transformers_keep_generate(tok):
    from mathkit.models.decoder import build_decoder

    assert not supports_compacting(build_decoder("small", tok))


def test_growing_cache_holds_what_a_dynamic_cache_holds_across_growth_and_compaction(model, tok, monkeypatch):
    from transformers import DynamicCache

    from mathkit.evaluation import decoding

    monkeypatch.setattr(decoding, "GROW_BY", 3)  # the buffer grows several times in 24 steps
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    grown, plain = decoding.growing_cache(model), DynamicCache(config=model.config)
    assert all(isinstance(layer, decoding.GrowingLayer) for layer in grown.layers)
    mask, tokens = enc["attention_mask"], enc["input_ids"]
    with torch.no_grad():
        for step in range(24):
            outs = [model(input_ids=tokens, attention_mask=mask, cache=c, use_cache=True).logits
                    for c in (grown, plain)]
            assert torch.equal(outs[0], outs[1])
            tokens = outs[0][:, -1:].argmax(-1)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            if step in (5, 11):  # drop rows as the decoder does
                keep = torch.arange(0, mask.shape[0], 2)
                for c in (grown, plain):
                    c.batch_select_indices(keep)
                mask, tokens = mask[keep], tokens[keep]
    for a, b in zip(grown.layers, plain.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert grown.get_seq_length() == plain.get_seq_length() == mask.shape[1] - 1  # mask holds the next token


def test_the_decoder_uses_the_growing_cache(model, tok, monkeypatch):
    from mathkit.evaluation import decoding

    made = []
    real = decoding.growing_cache
    monkeypatch.setattr(decoding, "growing_cache", lambda m: made.append(real(m)) or made[-1])
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    greedy_compacting(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=4, stop_ids=[])
    assert made and made[0].get_seq_length() > enc["input_ids"].shape[1]


class _CountingBackend:
    """A fake backend for greedy_loop: row r's next token is r * 10 + (tokens fed to it so far);
    it records which rows each step kept."""

    def __init__(self, n):
        self.rows, self.fed, self.keeps = list(range(n)), {r: 0 for r in range(n)}, []

    def first(self):
        return [r * 10 for r in self.rows]

    def advance(self, feed, keep):
        self.keeps.append(keep)
        if keep is not None:
            self.rows = [self.rows[i] for i in keep]
        assert len(feed) == len(self.rows)
        for r in self.rows:
            self.fed[r] += 1
        return [r * 10 + self.fed[r] for r in self.rows]


def test_greedy_loop_ends_rows_at_stop_tokens_stoppers_and_the_budget_and_drops_them():
    from mathkit.evaluation.decoding import greedy_loop

    class StopAtTwo:
        def stopped(self, tokens):
            return len(tokens) == 2 and tokens[0] == 20  # row 2 only

    backend = _CountingBackend(4)
    rows, slots = greedy_loop(backend.first(), backend.advance, max_new_tokens=4, stop_ids=[11],
                              stopper=StopAtTwo())
    # row 0: budget; row 1: stop token 11 (kept); row 2: the stopper after 2 tokens; row 3: budget
    assert rows == [[0, 1, 2, 3], [10, 11], [20, 21], [30, 31, 32, 33]]
    assert backend.keeps == [None, [0, 3], None]  # rows 1 and 2 leave after their second token
    assert slots == 4 + 2 + 2


def test_greedy_loop_teacher_forcing_feeds_the_forced_tokens():
    from mathkit.evaluation.decoding import greedy_loop

    fed = []

    def advance(feed, keep):
        fed.append((list(feed), keep))
        return [100 + t for t in feed]

    rows, _ = greedy_loop([7, 8], advance, max_new_tokens=0, forced=[[1, 2, 3], [4]])
    assert rows == [[7, 101, 102], [8]]  # the argmax at each forced position
    assert fed == [([1], [0]), ([2], None)]  # row 1 had its one prediction at the prompt


def test_prefill_groups_rows_of_similar_length_within_the_budget():
    from mathkit.evaluation.decoding import prefill_groups

    lengths = [5, 30, 8, 29, 7, 100]
    # longest first; each group's rows x its longest <= 60; a row over the budget stands alone
    assert prefill_groups(lengths, 60) == [[5], [1, 3], [2, 4, 0]]
    assert prefill_groups(lengths, 59) == [[5], [1], [3, 2], [4, 0]]
    assert prefill_groups(lengths, 10_000) == [[5, 1, 3, 2, 4, 0]]


def test_prompts_prefilled_in_groups_decode_exactly_as_one_batch(model, tok, monkeypatch):
    from mathkit.evaluation import decoding

    stop_ids = _stop_ids(tok)
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    lengths = enc["attention_mask"].sum(-1).tolist()
    monkeypatch.setattr(decoding, "PREFILL_TOKENS", 2 * max(lengths))
    groups = decoding.prefill_groups(lengths, decoding.PREFILL_TOKENS)
    assert len(groups) > 2 and len({lengths[g[0]] for g in groups}) > 2, "groups of different widths"
    rows, _ = greedy_compacting(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=24,
                                stop_ids=stop_ids)
    assert rows == _generate_rows(model, tok, PROMPTS, 24, stop_ids)


def test_a_grouped_prefill_leaves_the_cache_one_batch_prefill_leaves(model, tok):
    from mathkit.evaluation.decoding import prefill

    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    (grouped, first_g), (whole, first_w) = (prefill(model, enc["input_ids"], enc["attention_mask"], budget=b)
                                            for b in (12, 10_000))
    assert first_g == first_w
    mask = enc["attention_mask"].bool()[:, None, :, None]  # the padding columns differ (zeros vs garbage)
    for a, b in zip(grouped.layers, whole.layers):
        assert a.keys.shape == b.keys.shape
        torch.testing.assert_close(a.keys * mask, b.keys * mask)
        torch.testing.assert_close(a.values * mask, b.values * mask)


def test_caches_with_sliding_window_layers_are_prefilled_as_one_batch(model, tok, monkeypatch):
    from transformers.cache_utils import DynamicSlidingWindowLayer

    from mathkit.evaluation import decoding

    real = decoding.growing_cache

    def with_a_window(m):
        cache = real(m)
        cache.layers[0] = DynamicSlidingWindowLayer(sliding_window=64)
        return cache

    monkeypatch.setattr(decoding, "growing_cache", with_a_window)
    calls = []
    monkeypatch.setattr(decoding, "_forward_prefill",
                        lambda *a, **k: calls.append(a[1].shape) or (None, torch.zeros(a[1].shape[0], dtype=torch.long)))
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    decoding.prefill(model, enc["input_ids"], enc["attention_mask"], budget=12)
    assert calls == [enc["input_ids"].shape]
