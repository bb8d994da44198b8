"""The calculator writes exactly the result of the expression the model ended with "=", only then."""

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, PreTrainedTokenizerFast

from mathkit.evaluation.calculator import (CalculatorLogitsProcessor, calculator_supported, evaluate_expression,
                                format_number, pending_result)


@pytest.mark.parametrize("text,value", [
    ("350*3/5", 210), ("3 * $68 ", 204), ("7 x 9 ", 63), ("1000*25%", 250), ("2 + 7 + 11 ", 20),
    ("(3+4)*2", 14), ("1,200/4", 300), ("13-2", 11), ("-5+2", -3), ("$2.50 * 4", 10),
    ("20 ÷ 4", 5), ("6 × 7", 42), ("cost: 3*4", 12),
])
def test_expressions(text, value):
    assert evaluate_expression(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["42", "$68 ", "x ", "", "3/0", "2x", "(3+", "9**99", "1e400*1",
                                  "abc"])
def test_not_calculations(text):
    assert evaluate_expression(text) is None


def test_format_number():
    assert format_number(210.0) == "210"
    assert format_number(2.5) == "2.5"
    assert format_number(1 / 3) == "0.33"
    assert format_number(-3.0) == "-3"


@pytest.mark.parametrize("generated,result", [
    ("He drank 7*3=", "21"),
    ("She paid 3 * $68 = ", "204"),
    ("She paid 3 * $68 = $", "204"),
    ("first line 2+2=4.\nThen 10/4=", "2.5"),
    ("x = ", None),                       # a variable, not a calculation
    ("He drank 7*3=21 ccs", None),        # the result is already written
    ("The answer is 42", None),
    ("7*3\n=", None),                     # the expression must be on the line of the "="
])
def test_pending_result(generated, result):
    assert pending_result(generated) == result


def char_tokenizer():
    """One token per printable character (digits, '.', '-' included), like SmolLM2's digits."""
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<unk>": 0, **{ch: i + 1 for i, ch in enumerate(chars)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def run_scripted(tokenizer, prompt, generated, wanted, prompt_length=None):
    """Decode step by step where the "model" always prefers the next character of ``wanted``
    (a wrong result, say); returns what was actually written and the processor."""
    ids = tokenizer(prompt + generated, add_special_tokens=False)["input_ids"]
    calc = CalculatorLogitsProcessor(tokenizer, prompt_length=len(tokenizer(prompt)["input_ids"])
                                     if prompt_length is None else prompt_length)
    written = ""
    for ch in wanted:
        scores = torch.zeros(1, len(tokenizer))
        scores[0, tokenizer.convert_tokens_to_ids(ch)] = 10.0
        scores[0, tokenizer.convert_tokens_to_ids(" ")] = 5.0   # the model's second choice
        scores = calc(torch.tensor([ids]), scores)
        token = int(scores[0].argmax())
        ids.append(token)
        written += tokenizer.decode([token])
    return written, calc


def test_processor_rewrites_a_wrong_result():
    tok = char_tokenizer()
    assert calculator_supported(tok)
    written, calc = run_scripted(tok, "Q: 3 boxes of 68 pens?\nA: ", "He has 3*68=", "1845 pens")
    assert written.startswith("204 ")   # 204 forced; the model's 4th digit blocked
    assert calc.uses == 1


def test_processor_keeps_the_models_spacing_and_dollar():
    tok = char_tokenizer()
    written, calc = run_scripted(tok, "Q?\nA: ", "She paid 3 * $68 =", " $188.")
    assert written == " $204." and calc.uses == 1


def test_processor_is_silent_without_expressions():
    tok = char_tokenizer()
    for generated, wanted in [("There are 77 girls and ", "9 boys."), ("x = ", "12."),
                              ("7*3=21 so ", "21 cans.")]:
        written, calc = run_scripted(tok, "Q?\nA: ", generated, wanted)
        assert written == wanted and calc.uses == 0


def test_processor_never_reads_the_prompt():
    tok = char_tokenizer()
    written, calc = run_scripted(tok, "Compute 3*68=", "", "184")
    assert written == "184" and calc.uses == 0


def test_generate_with_a_model_stays_batched_and_aligned():
    """Inside transformers' generate with two left-padded rows: each row gets its own result."""
    tok = char_tokenizer()
    tok.pad_token = "<unk>"
    tok.padding_side = "left"
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=len(tok), max_position_embeddings=64,
                         pad_token_id=0)
    model = LlamaForCausalLM(config).eval()
    digit_ids = [tok.convert_tokens_to_ids(d) for d in "0123456789"]
    with torch.no_grad():  # a "model" that always wants to write the digit 7
        model.lm_head.weight.zero_()
        model.lm_head.bias = None
    prompts = ["12*3=", "(2+3)*4="]
    enc = tok(prompts, return_tensors="pt", padding=True)
    calc = CalculatorLogitsProcessor(tok, prompt_length=0)  # read the prompts as if generated

    class SevenFirst(torch.nn.Module):
        def forward(self, input_ids, scores):
            scores = scores.clone()
            scores[:, digit_ids[7]] += 1.0
            return scores

    out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=0,
                         logits_processor=LogitsProcessorList([SevenFirst(), calc]))
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:])
    assert texts[0].startswith("36") and texts[1].startswith("20"), texts


def test_unsupported_tokenizer_fails_clearly():
    class NoDigits:
        unk_token_id = 0

        def convert_tokens_to_ids(self, tokens):
            return [0 for _ in tokens]

        def decode(self, ids, **_):
            return "<unk>"

        def __len__(self):
            return 3

    with pytest.raises(ValueError, match="one token per digit"):
        CalculatorLogitsProcessor(NoDigits(), prompt_length=0)


class ScriptedReplies(torch.nn.Module):
    """Makes a model write a fixed reply to each prompt, character by character (the reply's
    arithmetic is wrong on purpose). It runs inside generate like any logits processor, before
    the calculator, so the calculator sees what a model that computes badly would want."""

    def __init__(self, tokenizer, replies: dict[str, str]):
        super().__init__()
        self.tok, self.replies, self.prompt_length = tokenizer, replies, None

    def forward(self, input_ids, scores):
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        step = input_ids.shape[1] - self.prompt_length
        scores = torch.full_like(scores, -1e4)
        for row, ids in enumerate(input_ids):
            prompt = self.tok.decode(ids[:self.prompt_length], skip_special_tokens=True)
            reply = next(r for p, r in self.replies.items() if p in prompt)
            target = self.tok.convert_tokens_to_ids(reply[step]) if step < len(reply) else self.tok.eos_token_id
            scores[row, target] = 0.0
        return scores


def wrong_arithmetic_model(tokenizer, replies):
    """A tiny random Llama (real generate: KV cache, left padding, batches) that writes ``replies``."""
    from tests.test_evaluation_evaluator import tiny_llama

    class WrongArithmeticLlama(type(tiny_llama(tokenizer))):
        def generate(self, *args, logits_processor=None, **kwargs):
            script = ScriptedReplies(tokenizer, replies)
            return super().generate(*args, logits_processor=LogitsProcessorList(
                [script, *(logits_processor or [])]), **kwargs)

    model = tiny_llama(tokenizer)
    model.__class__ = WrongArithmeticLlama
    return model


REPLIES = {
    "3 boxes of 68 pens": "3*68=184 pens.\n#### 184",
    "(2+3)*4": "(2+3)*4=21\n#### 21",
    "Tom is 7": "He is 7 years old.\n#### 7",   # no calculation: nothing to write
}
CALC_ROWS = [{"id": i, "problem": p, "answer": a} for i, (p, a) in
             enumerate([("Ann has 3 boxes of 68 pens. How many pens?", "204"),
                        ("What is (2+3)*4?", "20"), ("Tom is 7. How old is Tom?", "7")])]


def test_calculator_inside_the_evaluators_batched_generation():
    """Through evaluate_model, in left-padded batches of two: without the calculator the model's
    wrong products stay; with it, each row gets its own right result written."""
    from mathkit.evaluation.evaluator import evaluate_model
    from tests.test_evaluation_evaluator import tiny_tokenizer

    tok = tiny_tokenizer()
    kw = dict(prompt_fn=lambda row: f"Question: {row['problem']}\nAnswer: ", batch_size=2,
              max_new_tokens=30, progress=False)
    model = wrong_arithmetic_model(tok, REPLIES)
    plain = evaluate_model(model, tok, CALC_ROWS, **kw)
    assert [r["completion"] for r in plain.records] == list(REPLIES.values())
    assert plain.summary["calculator_uses"] == 0

    calc = evaluate_model(model, tok, CALC_ROWS, calculator=True, **kw)
    completions = [r["completion"] for r in calc.records]
    assert completions[0].startswith("3*68=204 pens.")
    assert completions[1].startswith("(2+3)*4=20\n")
    assert completions[2] == REPLIES["Tom is 7"]
    assert calc.summary["calculator_uses"] == 2 and calc.summary["settings"]["calculator"] is True
