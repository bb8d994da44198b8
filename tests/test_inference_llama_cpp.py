"""The llama.cpp backend: an exported tiny Llama decodes through generate_batched's external decoder
with torch's greedy tokens (F32, F16), honours stop tokens and stop rules, and finds its tokenizer
and stop ids; paths that are not GGUF exports are refused with a message saying what to pass."""

import json

import pytest
import torch

from mathkit.errors import MathkitError, ParamsError
from mathkit.evaluation.generation import generate_batched, stop_token_ids
from mathkit.inference import llama_cpp_model as lcm
from tests.test_export_gguf import LLAMA_CPP_REASON, tiny_export

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["Question: What is 5+7?\nAnswer:", "Q: 1+1?\nA:", "Question: A long one about pens and boxes?\nAnswer:",
           "Q: 10-3?\nA:", "Q: half of 1?\nA:"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="module")
def torch_model(exported):
    from mathkit.models import load

    return load(exported["model"], dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def f32(exported):
    return lcm.LlamaCppModel.from_path(exported["f32"], threads=1)


def _torch_greedy(torch_model, **kw):
    model, tok = torch_model
    return generate_batched(model, tok, PROMPTS, max_new_tokens=12, batch_size=5, progress=False, **kw)


def test_paths_that_are_not_gguf_exports_are_refused(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        lcm.resolve_gguf(tmp_path / "missing")
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ParamsError, match="is not a .gguf file"):
        lcm.resolve_gguf(tmp_path / "model.onnx")
    with pytest.raises(ParamsError, match="holds 0 .gguf files"):
        lcm.resolve_gguf(tmp_path)
    (tmp_path / lcm.MANIFEST).write_text(json.dumps({"format": "onnx", "file": "model.onnx"}))
    with pytest.raises(ParamsError, match="'onnx' export, not a GGUF one"):
        lcm.resolve_gguf(tmp_path)
    (tmp_path / lcm.MANIFEST).write_text(json.dumps({"format": "gguf", "file": "model.Q8_0.gguf"}))
    with pytest.raises(ParamsError, match="names model.Q8_0.gguf, which is not in"):
        lcm.resolve_gguf(tmp_path)
    (tmp_path / "model.Q8_0.gguf").write_bytes(b"GGUF")
    assert lcm.resolve_gguf(tmp_path) == tmp_path / "model.Q8_0.gguf"


def test_without_llama_cpp_python_the_message_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # import llama_cpp now fails
    with pytest.raises(MathkitError, match=r"pip install 'mathkit\[edge\]'"):
        lcm.LlamaCppModel.from_path(tmp_path)


def test_f32_greedy_equals_torch_through_the_external_decoder(f32, torch_model):
    model, tok = torch_model
    ours = generate_batched(f32, f32.tokenizer, PROMPTS, max_new_tokens=12, batch_size=2, progress=False)
    ref = _torch_greedy(torch_model)
    assert ours.decoder == "external" and ref.decoder == "compact"
    assert ours.completions == ref.completions and ours.new_tokens == ref.new_tokens
    assert all(n > 1 for n in ours.new_tokens)
    assert ours.decode_slots == sum(n - 1 for n in ours.new_tokens)  # one row at a time: no padding
    assert stop_token_ids(f32, f32.tokenizer) == stop_token_ids(model, tok)


def test_f16_greedy_equals_torch(exported, torch_model, tmp_path):
    from mathkit.export.gguf_export import quantize_gguf

    f16 = quantize_gguf(exported["f32"] / "model.F32.gguf", tmp_path / "model.F16.gguf", "F16")
    model = lcm.LlamaCppModel.from_path(f16, threads=1)  # a bare file: tokenizer and stop ids from the GGUF
    ours = generate_batched(model, model.tokenizer, PROMPTS, max_new_tokens=12, batch_size=5, progress=False)
    assert ours.completions == _torch_greedy(torch_model).completions
    # no generation config beside the file: llama.cpp's own end-of-reply tokens, a superset of torch's
    assert set(stop_token_ids(*torch_model)) < set(stop_token_ids(model, model.tokenizer))


def test_llama_cpp_reads_the_prompt_as_the_hf_tokenizer_wrote_it(f32):
    text = f32.tokenizer.apply_chat_template([{"role": "user", "content": "What is 12 * 7?"}],
                                             tokenize=False, add_generation_prompt=True)
    hf = f32.tokenizer(text, add_special_tokens=True)["input_ids"]
    assert f32.llama.tokenize(text.encode(), add_bos=False, special=True) == hf
    assert "<|im_start|>" in text and f32.tokenizer.convert_tokens_to_ids("<|im_start|>") in hf


def test_stop_tokens_and_stop_rules_end_a_row(f32, torch_model):
    prompt = f32.tokenizer(PROMPTS[0])["input_ids"]
    free = f32.greedy_row(prompt, max_new_tokens=8, stop_ids=[])
    assert len(free) == 8
    assert f32.greedy_row(prompt, max_new_tokens=8, stop_ids=[free[2]]) == free[:3]

    class AfterThree:
        def stopped(self, tokens):
            return len(tokens) == 3

    assert f32.greedy_row(prompt, max_new_tokens=8, stop_ids=[], stopper=AfterThree()) == free[:3]
    assert f32.greedy_row(prompt, max_new_tokens=0, stop_ids=[]) == []
    with pytest.raises(ParamsError, match="exceed llama.cpp's context"):
        f32.greedy_row(prompt, max_new_tokens=f32.llama.n_ctx(), stop_ids=[])


def test_rows_are_stripped_of_left_padding(f32):
    ids = f32.tokenizer(PROMPTS[1])["input_ids"]
    pad = f32.tokenizer.pad_token_id
    padded = torch.tensor([[pad, pad, *ids]])
    mask = torch.tensor([[0, 0, *[1] * len(ids)]])
    rows, slots = f32.greedy_rows(padded, mask, max_new_tokens=5, stop_ids=[])
    assert rows == [f32.greedy_row(ids, max_new_tokens=5, stop_ids=[])] and slots == 4
