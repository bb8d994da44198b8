"""The reload check: identical greedy generations for the same weights, a difference otherwise."""

import pytest
import torch

from mathkit.training.reload_check import check_same_generations, greedy_completions
from tests.tiny_llama import build_tokenizer, load_base, save_tiny_llama, word_problems


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tokenizer = build_tokenizer()
    folder = save_tiny_llama(tmp_path_factory.mktemp("tiny"), tokenizer)
    return tokenizer, folder


def test_same_weights_generate_the_same_and_other_weights_do_not(setup):
    tokenizer, folder = setup
    prompts = [r["prompt"] for r in word_problems()[:3]]
    model = load_base(folder)
    reference = greedy_completions(model, tokenizer, prompts, max_new_tokens=8)
    assert len(reference) == 3 and all(reference)
    same = check_same_generations(reference, load_base(folder), tokenizer, prompts, max_new_tokens=8)
    assert same["identical"] and all(p["same"] for p in same["pairs"])
    other = load_base(folder)
    torch.manual_seed(1)
    with torch.no_grad():
        for weight in other.parameters():
            weight.normal_(0.0, 0.5)  # other weights
    changed = check_same_generations(reference, other, tokenizer, prompts, max_new_tokens=8)
    assert not changed["identical"]
    assert [p["prompt"] for p in changed["pairs"]] == prompts
