"""Character-level tokenizer for the arithmetic format, as a transformers fast tokenizer.

Every digit, operator, ``=`` and space is one token and the markers ``<think>``, ``</think>``,
``<end>`` are one token each, so a model sees one column digit per position (a BPE vocabulary would
glue digits together and hide the column structure). Built with the ``tokenizers`` library
(WordLevel over single characters, markers as added special tokens) and wrapped as
``PreTrainedTokenizerFast``, so it saves with ``save_pretrained`` and loads back with
``AutoTokenizer.from_pretrained(dir)`` without mathkit. ``<end>`` is the EOS token and ``<pad>``
the padding; there is no BOS: every prompt starts with a digit, which is context enough.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mathkit.data.markers import END, THINK_END, THINK_START

PAD = "<pad>"
UNK = "<unk>"
SPECIAL_TOKENS = (PAD, UNK, END, THINK_START, THINK_END)
CHARACTERS = tuple("0123456789+-*= ")


def build_vocab() -> dict[str, int]:
    """Token -> id: the special tokens first (``<pad>`` is 0), then the characters."""
    return {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}


def build_char_tokenizer(model_max_length: int | None = None) -> PreTrainedTokenizerFast:
    """The arithmetic tokenizer; ``model_max_length`` is recorded for truncation warnings."""
    backend = Tokenizer(models.WordLevel(vocab=build_vocab(), unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()  # join characters back without separators
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    kwargs = {"model_max_length": model_max_length} if model_max_length else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=END,
        additional_special_tokens=[THINK_START, THINK_END],
        padding_side="right",
        **kwargs,
    )
