"""ONNX Runtime behind mathkit's evaluator: the exported graph decodes the same greedy tokens as
torch (KV cache and compaction included), the cached path equals the uncached one, int8 runs,
and ``evaluate`` / ``solve`` take ``--backend onnx`` (tiny models only)."""

import json

import numpy as np
import pytest
import torch

from mathkit.cli import main
from mathkit.errors import MathkitError, ParamsError
from mathkit.evaluation.decoding import greedy_compacting
from mathkit.evaluation.generation import generate_batched, stop_token_ids
from mathkit.inference import load_backend
from mathkit.models import load
from tests.onnx_exports import decoder_export, llama_export

pytestmark = pytest.mark.usefixtures("one_thread")

LLAMA_PROMPTS = ["Question: what is 2+2?", "hi", "The quick brown fox jumps over", "a b c", "7 * 8 ="]
ARITHMETIC_PROMPTS = ["12+34=", "5-7=", "123*45=", "9=", "1000+1=", "77-7="]


class LengthStopper:
    """Ends a row after 2 + (first token % 5) tokens: rows finish at different steps, so the
    batch compacts (a random model seldom writes EOS)."""

    def stopped(self, tokens):
        return len(tokens) >= 2 + tokens[0] % 5


def _encode(tokenizer, prompts):
    tokenizer.padding_side = "left"
    return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


@pytest.mark.parametrize("export", [llama_export, decoder_export], ids=["llama", "mathkit_decoder"])
def test_onnx_greedy_rows_equal_torch_greedy(export):
    checkpoint, folder = export()
    model, tok = load(checkpoint, device="cpu")
    onnx_model, onnx_tok = load_backend(folder, "onnx", threads=1)
    prompts = LLAMA_PROMPTS if export is llama_export else ARITHMETIC_PROMPTS
    ref = generate_batched(model, tok, prompts, max_new_tokens=12, batch_size=4, progress=False,
                           add_special_tokens=False, skip_special_tokens=False)
    got = generate_batched(onnx_model, onnx_tok, prompts, max_new_tokens=12, batch_size=4, progress=False,
                           add_special_tokens=False, skip_special_tokens=False)
    assert got.decoder == "external"
    assert got.completions == ref.completions and got.new_tokens == ref.new_tokens
    assert len(set(got.completions)) > 1  # the random model does not write one constant string


def test_compaction_with_a_stopper_matches_torch():
    checkpoint, folder = llama_export()
    model, tok = load(checkpoint, device="cpu")
    onnx_model, _ = load_backend(folder, "onnx", threads=1)
    enc = _encode(tok, LLAMA_PROMPTS)
    stop_ids = stop_token_ids(model, tok)
    ref, ref_slots = greedy_compacting(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=10,
                                       stop_ids=stop_ids, stopper=LengthStopper())
    rows, slots = onnx_model.greedy_rows(enc["input_ids"], enc["attention_mask"], max_new_tokens=10,
                                         stop_ids=stop_ids, stopper=LengthStopper())
    assert rows == ref and slots == ref_slots
    assert len({len(r) for r in rows}) > 1  # rows did leave the batch at different steps


@pytest.mark.parametrize("export", [llama_export, decoder_export], ids=["llama", "mathkit_decoder"])
def test_cached_steps_equal_one_uncached_pass_and_torch(export):
    checkpoint, folder = export()
    model, tok = load(checkpoint, device="cpu")
    onnx_model, _ = load_backend(folder, "onnx", threads=1)
    prompts = LLAMA_PROMPTS[:3] if export is llama_export else ARITHMETIC_PROMPTS[:3]
    enc = _encode(tok, prompts)
    ids, mask = enc["input_ids"].numpy(), enc["attention_mask"].numpy()
    positions = np.where(mask == 0, 1, mask.cumsum(-1) - 1)
    n = onnx_model.n_layers * 2
    empty = [np.zeros((len(prompts), onnx_model.kv_heads, 0, onnx_model.head_dim), np.float32)] * n
    whole, _ = onnx_model._step(ids, mask, positions, empty)
    head, past = onnx_model._step(ids[:, :-2], mask[:, :-2], positions[:, :-2], empty)
    for j in (-2, -1):  # the last two tokens one at a time through the cache
        upto = mask.shape[1] + j + 1
        last, past = onnx_model._step(ids[:, j:upto or None], mask[:, :upto], positions[:, j:upto or None], past)
    np.testing.assert_allclose(last, whole, atol=1e-4)
    with torch.no_grad():
        ref = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    position_ids=torch.from_numpy(positions)).logits[:, -1]
    np.testing.assert_allclose(whole, ref.numpy(), atol=1e-4)


def test_int8_decodes_and_forced_agreement_is_counted():
    from mathkit.export.quantize import agreement

    _, folder = llama_export()
    fp32, _ = load_backend(folder, "onnx", threads=1)
    int8, tok = load_backend(folder, "onnx", threads=1, variant="int8")
    got = generate_batched(int8, tok, LLAMA_PROMPTS, max_new_tokens=8, batch_size=5, progress=False)
    assert len(got.completions) == 5 and all(n > 0 for n in got.new_tokens)
    same = agreement(fp32, fp32, LLAMA_PROMPTS, max_new_tokens=8)
    assert same["next_token_agreement"] == 1.0 and same["identical_greedy_rows"] == 5


def test_load_backend_errors():
    _, folder = llama_export()
    with pytest.raises(ParamsError, match="unknown backend 'tensorrt'"):
        load_backend(folder, "tensorrt")
    with pytest.raises(ParamsError, match="takes"):
        load_backend(folder, "onnx", adapter="x")
    with pytest.raises(MathkitError, match="no 'int4' variant"):
        load_backend(folder, "onnx", variant="int4")
    with pytest.raises(MathkitError, match="not an ONNX export"):
        load_backend(folder.parent / "llama", "onnx")


def test_evaluate_and_solve_run_on_the_onnx_backend(tmp_path, capsys):
    from mathkit.data.arithmetic import generate_examples
    from mathkit.jsonl import write_jsonl

    checkpoint, folder = decoder_export()
    data = write_jsonl(generate_examples(6, max_digits=2, seed=3), tmp_path / "test.jsonl")
    outs = {}
    for backend, model in (("torch", checkpoint), ("onnx", folder)):
        out = tmp_path / f"{backend}.jsonl"
        code = main(["evaluate", "--model", str(model), "--backend", backend, "--dataset", str(data),
                     "--max-new-tokens", "8", "--output", str(out), "--no-progress"])
        assert code == 0
        outs[backend] = [json.loads(line)["completion"] for line in out.read_text().splitlines()]
    assert outs["onnx"] == outs["torch"]
    summary = json.loads((tmp_path / "onnx.summary.json").read_text())
    assert summary["backend"] == "onnx" and summary["decoder"] == "external"
    capsys.readouterr()

    answers = {}
    for backend, model in (("torch", checkpoint), ("onnx", folder)):
        assert main(["solve", "12+34", "5*6", "--json", "--checkpoint", str(model), "--backend", backend,
                     "--max-new-tokens", "10"]) == 0
        answers[backend] = json.loads(capsys.readouterr().out)
    assert answers["onnx"] == answers["torch"]
    code = main(["solve", "1+1", "--checkpoint", str(folder), "--backend", "onnx", "--temperature", "0.7"])
    err = capsys.readouterr().err
    assert code == 2 and "samples with torch" in err and err.count("\n") == 1


def test_evaluate_refuses_torch_only_flags_on_other_backends(tmp_path, capsys):
    _, folder = decoder_export()
    for flags, message in ((["--bf16"], "--bf16 applies to --backend torch"),
                           (["--decoder", "compact"], "decodes outside torch"),
                           (["--adapter", str(tmp_path)], "export the model with its adapter merged")):
        code = main(["evaluate", "--model", str(folder), "--backend", "onnx", "--dataset", "x", *flags])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1
