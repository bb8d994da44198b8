"""Students cut from a teacher's layers: layer choice, copied weights, identical logits with every
layer kept, an untouched teacher, save -> load, and clear errors. Tiny random Llama, Gemma-3 text
and small-decoder teachers."""

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

from mathkit.models import build_decoder, known_positional, load, save
from mathkit.models.char_tokenizer import build_char_tokenizer
from mathkit.models.config import ModelConfigError
from mathkit.models.layer_subset import (
    UnsupportedArchitectureError,
    check_layers,
    every_other,
    spread,
    student_from_layers,
)
from tests.tiny_llama import build_tokenizer

GREEDY = dict(max_new_tokens=6, do_sample=False, eos_token_id=None)


@pytest.fixture(scope="module")
def bpe():
    return build_tokenizer()


@pytest.fixture(scope="module")
def chars():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def llama(bpe):
    """Four tiny random Llama layers, tied embeddings (as SmolLM2)."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(bpe), max_position_embeddings=128,
                         pad_token_id=bpe.pad_token_id, bos_token_id=bpe.bos_token_id,
                         eos_token_id=bpe.eos_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def gemma3(vocab_size=40):
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                              sliding_window=4, max_position_embeddings=256, pad_token_id=0, bos_token_id=1,
                              eos_token_id=2,
                              layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    return Gemma3ForCausalLM(config).eval()


def decoder(chars, name="rope", **fields):
    torch.manual_seed(0)
    tiny = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64)
    return build_decoder("small", chars, name, **{**tiny, **fields}).eval()


def layer_state(model, i):
    return model.model.layers[i].state_dict()


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---- choosing layers --------------------------------------------------------------------------

def test_spread_keeps_first_and_last_and_spaces_the_rest_evenly():
    assert spread(12, 6) == [0, 2, 4, 7, 9, 11]  # the layers DistilBERT kept of BERT-base
    assert spread(4, 2) == [0, 3]
    assert spread(30, 3) == [0, 15, 29]  # SmolLM2-135M's 30 layers
    assert spread(5, 5) == [0, 1, 2, 3, 4] and spread(1, 1) == [0]
    for n_teacher in range(2, 31):
        for n_student in range(2, n_teacher + 1):
            picked = spread(n_teacher, n_student)
            assert len(picked) == n_student and picked[0] == 0 and picked[-1] == n_teacher - 1
            assert all(b > a for a, b in zip(picked, picked[1:]))
    assert every_other(5) == [0, 2, 4] and every_other(1) == [0]


@pytest.mark.parametrize("call, message", [
    (lambda: spread(4, 5), "a student of 5 layers cannot be cut from a teacher of 4"),
    (lambda: spread(4, 1), r"needs n_student >= 2; for a one-layer student pass layers=\[i\]"),
    (lambda: spread(0, 1), "n_teacher must be a positive number of layers, got 0"),
    (lambda: every_other(2.0), "n_teacher must be a positive number of layers"),
    (lambda: check_layers([0, 4], 4), r"layers \[4\] are outside the teacher's 0..3 \(4 layers\)"),
    (lambda: check_layers([-1], 4), "negative indices are not accepted"),
    (lambda: check_layers([2, 1], 4), r"distinct and in increasing order .* e.g. \[1, 2\]"),
    (lambda: check_layers([1, 1], 4), "distinct and in increasing order"),
    (lambda: check_layers([], 4), "layers is empty"),
    (lambda: check_layers([0, 1.0], 4), "integer layer indices"),
    (lambda: check_layers("01", 4), "list of teacher layer indices"),
])
def test_bad_layer_choices_say_what_to_do(call, message):
    with pytest.raises(ModelConfigError, match=message):
        call()


# ---- the Llama family (SmolLM2) -----------------------------------------------------------------

def test_a_llama_student_copies_the_chosen_layers_embeddings_norm_and_head(llama):
    student = student_from_layers(llama, [0, 3])
    assert type(student) is LlamaForCausalLM and student.config.num_hidden_layers == 2
    per_layer = sum(p.numel() for p in llama.model.layers[0].parameters())
    assert student.num_parameters() == llama.num_parameters() - 2 * per_layer
    assert_same_tensors(layer_state(student, 0), layer_state(llama, 0))
    assert_same_tensors(layer_state(student, 1), layer_state(llama, 3))
    assert student.model.layers[1].self_attn.layer_idx == 1  # renumbered: the KV cache indexes by it
    assert torch.equal(student.model.embed_tokens.weight, llama.model.embed_tokens.weight)
    assert torch.equal(student.model.norm.weight, llama.model.norm.weight)
    assert student.lm_head.weight is student.model.embed_tokens.weight  # still tied
    ids = torch.randint(4, 100, (2, 7))
    with torch.no_grad():
        assert torch.equal(student.generate(ids, **GREEDY), student.generate(ids, use_cache=False, **GREEDY))
    assert llama.config.num_hidden_layers == 4  # the teacher keeps its own config


def test_keeping_every_layer_gives_identical_logits(llama):
    copy = student_from_layers(llama, range(4))
    ids = torch.randint(4, 100, (2, 9))
    with torch.no_grad():
        assert torch.equal(copy(ids).logits, llama(ids).logits)


def test_the_teacher_is_left_untouched_and_shares_nothing(llama):
    before = {k: v.clone() for k, v in llama.state_dict().items()}
    config_before = llama.config.to_dict()
    student = student_from_layers(llama, [1, 2]).train()
    teacher_storage = {p.untyped_storage().data_ptr() for p in llama.parameters()}
    assert not teacher_storage & {p.untyped_storage().data_ptr() for p in student.parameters()}
    assert all(p.requires_grad for p in student.parameters())
    ids = torch.randint(4, 100, (2, 6))
    optimizer = torch.optim.SGD(student.parameters(), lr=1.0)
    student(ids, labels=ids).loss.backward()
    optimizer.step()
    assert not torch.equal(student.model.layers[0].mlp.up_proj.weight, llama.model.layers[1].mlp.up_proj.weight)
    assert_same_tensors(llama.state_dict(), before)
    assert llama.config.to_dict() == config_before and not llama.training
    assert all(p.grad is None for p in llama.parameters())


def test_a_llama_student_saves_and_loads(llama, bpe, tmp_path):
    student = student_from_layers(llama, spread(4, 2))
    save(student, bpe, tmp_path)
    loaded, _ = load(tmp_path, device="cpu")
    assert loaded.config.num_hidden_layers == 2
    ids = torch.randint(4, 100, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, student(ids).logits)


# ---- Gemma-3 text: its per-layer attention types follow the layers ---------------------------

def test_a_gemma3_student_keeps_each_layers_attention_type():
    teacher = gemma3()
    student = student_from_layers(teacher, [1, 2])
    assert student.config.layer_types == ["full_attention", "sliding_attention"]
    assert teacher.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    assert_same_tensors(layer_state(student, 0), layer_state(teacher, 1))
    ids = torch.randint(3, 40, (2, 10))  # longer than the sliding window (4)
    with torch.no_grad():
        assert torch.equal(student.generate(ids, **GREEDY), student.generate(ids, use_cache=False, **GREEDY))
        assert torch.equal(student_from_layers(teacher, [0, 1, 2])(ids).logits, teacher(ids).logits)


# ---- the small decoder: positional encodings follow their layers -------------------------------

@pytest.mark.parametrize("name", known_positional(aliases=False))
def test_a_decoder_student_with_every_layer_gives_identical_logits(chars, name):
    teacher = decoder(chars, name, attention_window=3)
    copy = student_from_layers(teacher, range(4))
    assert copy.config.attention_window == 3 and copy.config.positional_encoding == name
    batch = chars(["658+189=", "3+5="], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(copy(**batch).logits, teacher(**batch).logits)


def test_per_layer_encodings_are_copied_from_their_teacher_layers(chars):
    teacher = decoder(chars, "t5_relative", pe_layers=[1, 3])
    student = student_from_layers(teacher, [0, 1, 3])
    assert student.config.pe_layers == [1, 2]
    assert [type(layer.positional).name for layer in student.model.layers] == ["nope", "t5_relative", "t5_relative"]
    assert_same_tensors(layer_state(student, 1), layer_state(teacher, 1))
    assert_same_tensors(layer_state(student, 2), layer_state(teacher, 3))


def test_an_absolute_encoding_stays_at_the_input(chars, tmp_path):
    teacher = decoder(chars, "learned")
    student = student_from_layers(teacher, [2, 3])  # teacher layer 0, which holds the table, is dropped
    table = student.model.layers[0].positional.table
    assert torch.equal(table.weight, teacher.model.layers[0].positional.table.weight)
    assert_same_tensors({k: v for k, v in layer_state(student, 0).items() if not k.startswith("positional.")},
                        {k: v for k, v in layer_state(teacher, 2).items() if not k.startswith("positional.")})
    save(student, chars, tmp_path)
    loaded, _ = load(tmp_path, device="cpu")
    ids = torch.randint(5, 20, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, student(ids).logits)


# ---- what cannot be cut ----------------------------------------------------------------------

def test_unsupported_models_are_refused_with_the_supported_list(llama):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedArchitectureError, match="model_type 'gpt2'.*supported model types: .*llama"):
        student_from_layers(gpt2, [0])
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(student_from_layers(llama, [0, 1]), LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(UnsupportedArchitectureError, match="peft model: merge the adapter first"):
        student_from_layers(wrapped, [0])
    with pytest.raises(ModelConfigError, match="outside the teacher's 0..3"):
        student_from_layers(llama, [0, 4])
