"""Notebook 00's parameters: the memory estimate it prints before it loads the model."""

from pathlib import Path

import pytest

from mathkit.params import load_params
from mathkit.params.base_model_eval import BaseModelEvalParams

PROFILES = sorted((Path(__file__).parents[1] / "params" / "00_base_model_eval").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_profile_estimates_its_generation(profile):
    params = load_params(BaseModelEvalParams, profile)
    (generation,) = params.memory_estimates()
    assert generation.method == "inference" and generation.settings["batch"] == params.batch_size
    assert generation.settings["seq_len"] == params.estimate_prompt_tokens + params.max_new_tokens
    assert generation.kv_cache > 0


def test_the_estimate_follows_the_loading_and_compute_dtypes():
    plain = BaseModelEvalParams(batch_size=8).memory_estimates()[0]
    quantized = BaseModelEvalParams(batch_size=8, load_in_4bit=True, bf16=True).memory_estimates()[0]
    assert quantized.settings["dtype"] == "nf4" and quantized.settings["compute_dtype"] == "bfloat16"
    assert quantized.weights < plain.weights / 4 and quantized.kv_cache == plain.kv_cache / 2
    longer = BaseModelEvalParams(batch_size=8, max_new_tokens=512).memory_estimates()[0]
    assert longer.kv_cache > plain.kv_cache
