"""Is the saved model the one that was evaluated? Greedy generations before saving and after reloading.

An adapter reloaded into a fresh base must generate exactly what the trained model generated, or
the artefact on disk is not the model whose numbers the report shows. The reference is taken
before the trained model is freed, so two large models never sit in memory together.
"""

from __future__ import annotations

from mathkit.evaluation.generation import generate_batched


def greedy_completions(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 32) -> list[str]:
    """Greedy completions in fp32, all prompts in one batch (the same padding every time).

    Like the evaluator, the tokenizer adds no BOS to prompts that already start with one.
    """
    bos = getattr(tokenizer, "bos_token", None)
    has_bos = bool(bos) and all(p.startswith(bos) for p in prompts)
    return generate_batched(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                            batch_size=len(prompts), bf16=False, progress=False,
                            add_special_tokens=not has_bos).completions


def check_same_generations(reference: list[str], model, tokenizer, prompts: list[str], *,
                           max_new_tokens: int = 32) -> dict:
    """Does ``model`` generate exactly ``reference``? ``{"identical", "pairs"}``."""
    again = greedy_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    pairs = [{"prompt": p, "trained": x, "reloaded": y, "same": x == y}
             for p, x, y in zip(prompts, reference, again)]
    return {"identical": all(p["same"] for p in pairs), "pairs": pairs}
