from transformers import AutoTokenizer

from mathkit.data.arithmetic import count_tokens, generate_examples
from mathkit.models.char_tokenizer import CHARACTERS, SPECIAL_TOKENS, build_char_tokenizer


def sample_texts():
    return [r["text"] for r in generate_examples(1000, min_digits=1, max_digits=4, ops=("+", "-", "*"), seed=3)]


def test_round_trip_many_examples():
    tok = build_char_tokenizer()
    for text in sample_texts():
        ids = tok(text)["input_ids"]
        assert len(ids) == count_tokens(text)
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_one_token_per_character_and_marker():
    tok = build_char_tokenizer()
    ids = tok("65+1=<think>5+1=6</think>66<end>")["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces == list("65+1=") + ["<think>"] + list("5+1=6") + ["</think>"] + list("66") + ["<end>"]
    assert len(tok) == len(SPECIAL_TOKENS) + len(CHARACTERS)
    assert tok.convert_ids_to_tokens(tok(" ")["input_ids"]) == [" "]


def test_special_tokens_and_skip():
    tok = build_char_tokenizer()
    assert tok.eos_token == "<end>" and tok.pad_token == "<pad>" and tok.pad_token_id == 0
    assert tok.bos_token is None
    ids = tok("1+1=<think>1+1=2</think>2<end>")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "1+1=1+1=22"
    assert tok("7a")["input_ids"][1] == tok.unk_token_id


def test_padding_sides():
    tok = build_char_tokenizer()
    batch = tok(["1+2=", "333+4="], padding=True)
    assert batch["input_ids"][0][-2:] == [tok.pad_token_id] * 2
    tok.padding_side = "left"
    batch = tok(["1+2=", "333+4="], padding=True)
    assert batch["input_ids"][0][:2] == [tok.pad_token_id] * 2
    assert batch["attention_mask"][0] == [0, 0, 1, 1, 1, 1]


def test_save_and_load_with_autotokenizer(tmp_path):
    tok = build_char_tokenizer(model_max_length=128)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.model_max_length == 128
    assert loaded.get_vocab() == tok.get_vocab()
    assert (loaded.eos_token, loaded.pad_token, loaded.unk_token) == ("<end>", "<pad>", "<unk>")
    for text in sample_texts()[:200]:
        ids = loaded(text)["input_ids"]
        assert ids == tok(text)["input_ids"]
        assert loaded.decode(ids) == text
