"""Gemma 3's turn format, rendered by the tokenizer's own apply_chat_template."""

import pytest
from jinja2.exceptions import TemplateError

from mathkit.models.chat_templates import GEMMA3_TURNS
from tests.test_models_loading import tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    tok = tiny_tokenizer()
    tok.chat_template = GEMMA3_TURNS
    return tok


def render(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def test_user_turn_and_generation_prompt(tokenizer):
    text = render(tokenizer, [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nWhat is 2+3?<end_of_turn>\n<start_of_turn>model\n"


def test_system_prompt_is_folded_into_the_first_user_turn(tokenizer):
    messages = [{"role": "system", "content": "You are an expert mathematics tutor."},
                {"role": "user", "content": "What is 2+3?"},
                {"role": "assistant", "content": "<think>2+3=5</think> 5"},
                {"role": "user", "content": "And 3+4?"}]
    assert render(tokenizer, messages) == (
        "<bos><start_of_turn>user\nYou are an expert mathematics tutor.\n\nWhat is 2+3?<end_of_turn>\n"
        "<start_of_turn>model\n<think>2+3=5</think> 5<end_of_turn>\n"
        "<start_of_turn>user\nAnd 3+4?<end_of_turn>\n")
    assert "system" not in render(tokenizer, messages)


def test_prompt_plus_completion_is_the_whole_conversation(tokenizer):
    """What SFT on prompt/completion pairs relies on: the prompt is a prefix of the full text."""
    question = [{"role": "user", "content": "What is 2+3?"}]
    prompt = render(tokenizer, question, add_generation_prompt=True)
    full = render(tokenizer, question + [{"role": "assistant", "content": "5"}])
    assert full == prompt + "5<end_of_turn>\n"


def test_roles_must_alternate(tokenizer):
    with pytest.raises(TemplateError, match="alternate"):
        render(tokenizer, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(TemplateError, match="alternate"):
        render(tokenizer, [{"role": "assistant", "content": "a"}])


def test_the_tutor_prompt_and_think_solution_in_gemma_turns(tokenizer):
    """What notebook 03 trains on: Gemma has no system role, so the tutor prompt opens the first
    user turn; the completion is the <think> solution closed by Gemma's end of turn, and the prompt
    plus the completion is exactly the rendered conversation. (This test tokenizer adds no BOS of
    its own, so the template's stays; Gemma's tokenizer adds one and formatting drops the template's.)"""
    from mathkit.data.formatting import DEFAULT_SYSTEM_PROMPT, STYLE_INSTRUCTIONS, format_example

    row = {"problem": "What is 2+3?", "solution": "2 + 3 = 5", "answer": "5"}
    ex = format_example(tokenizer, row, style="think", system_prompt=None)
    assert ex["prompt"] == (f"<bos><start_of_turn>user\n{DEFAULT_SYSTEM_PROMPT}\n\nWhat is 2+3?\n\n"
                            f"{STYLE_INSTRUCTIONS['think']}<end_of_turn>\n<start_of_turn>model\n")
    assert ex["completion"] == "<think>\n2 + 3 = 5\n</think>\n\nThe final answer is $\\boxed{5}$.<end_of_turn>"
    conversation = render(tokenizer, [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                                      {"role": "user", "content": f"What is 2+3?\n\n{STYLE_INSTRUCTIONS['think']}"},
                                      {"role": "assistant", "content": ex["completion"].removesuffix("<end_of_turn>")}])
    assert ex["prompt"] + ex["completion"] + "\n" == conversation
    assert "system" not in conversation
