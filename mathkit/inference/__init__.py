"""Run a model on one of three backends behind the same evaluator: torch, ONNX Runtime, llama.cpp.

:func:`load_backend` gives ``(model, tokenizer)``. The torch model is :func:`mathkit.models.load`'s;
the other two decode outside torch and satisfy :mod:`mathkit.evaluation.generation`'s "external"
contract (``greedy_rows``), so :func:`mathkit.evaluation.evaluator.evaluate_model` takes any of them.
"""

from __future__ import annotations

from mathkit.errors import MathkitError, ParamsError

BACKENDS = ("torch", "onnx", "llama_cpp")


def load_backend(path, backend: str = "torch", **kwargs):
    """``(model, tokenizer)`` for ``path`` on ``backend``.

    ``torch``: ``path`` is anything :func:`mathkit.models.load` takes; ``kwargs`` go to it.
    ``onnx``: an export folder of ``python -m mathkit export --format onnx`` (or a ``.onnx`` file
    in one); ``threads=``, ``variant="fp32"|"int8"``. ``llama_cpp``: a ``.gguf`` file or a GGUF
    export folder; ``threads=``; needs ``llama-cpp-python`` (``pip install mathkit[edge]``)."""
    if backend == "torch":
        from mathkit.models import load

        return load(path, **kwargs)
    if backend == "onnx":
        from mathkit.inference.onnx_model import OnnxCausalLM

        _only(kwargs, ("threads", "variant"), backend)
        model = OnnxCausalLM.from_path(path, **kwargs)
        return model, model.tokenizer
    if backend == "llama_cpp":
        _only(kwargs, ("threads",), backend)
        try:
            from mathkit.inference.llama_cpp_model import LlamaCppModel
        except ModuleNotFoundError as err:
            raise MathkitError(f"the llama_cpp backend needs {err.name}: pip install 'mathkit[edge]' "
                               "(llama-cpp-python builds from source in about 5 minutes)") from None
        model = LlamaCppModel.from_path(path, threads=kwargs.get("threads"))
        return model, model.tokenizer
    raise ParamsError(f"unknown backend {backend!r}: use one of {list(BACKENDS)}")


def _only(kwargs: dict, allowed: tuple[str, ...], backend: str) -> None:
    extra = sorted(set(kwargs) - set(allowed))
    if extra:
        raise ParamsError(f"the {backend} backend takes {list(allowed)}, not {extra}")
