"""Parameters of notebook 04 (positional encodings and answer formats for length generalization).

The grid is ``positional_encodings`` x ``formats`` x ``seeds``: one model per cell, every one with
the same model size, data sizes and ``training`` block (TRL ``SFTConfig`` fields, see
:mod:`mathkit.params.training`), so that only the encoding and the format differ. Models train on
additions whose operands have 1..``max_digits`` (N) digits and are tested on operands of 1..2N.
The defaults are the notebook's quick CPU values; ``params/04_pe_ablation/*.yaml`` change only
what differs. YAML note: write floats with a dot (``1.0e-3``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mathkit.data.arithmetic.formats import FORMATS, HINT_LETTERS
from mathkit.params.arithmetic_cot import DEFAULT_TRAINING as ARITHMETIC_TRAINING
from mathkit.params.training import TrainingParams

# Index hints name each digit's place with a letter: answers of 2N+1 digits need 2N+1 letters.
MAX_DIGITS = (len(HINT_LETTERS) - 1) // 2

# The small decoder trains as in notebook 01 (its quick-run block), validating less often.
DEFAULT_TRAINING: dict[str, Any] = {**ARITHMETIC_TRAINING, "eval_steps": 100}

Format = Literal["cot", "plain", "reversed", "index_hints"]
assert set(Format.__args__) == set(FORMATS)  # one list of formats, the data module's

# Keys that do not change what a run computes: a finished run is reused whatever they are.
NOT_RUN_SETTINGS = ("positional_encodings", "formats", "seeds", "pe_options", "output_dir", "checkpoint_dir",
                    "resume", "threads", "workers", "n_samples_shown", "neox")

# LoRA on a Pythia with a swapped encoding: the settings the seed gives for pythia-2.8b on a 16 GB
# GPU, and what a T4 runs. Profiles set the batch, precision and budget.
NEOX_TRAINING: dict[str, Any] = {
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "per_device_eval_batch_size": 16,
    "learning_rate": 2.0e-4, "warmup_steps": 20, "max_steps": 400, "max_length": 512,
    "eval_steps": 100, "save_steps": 100, "logging_steps": 10,
}


def unique(values: list, what: str) -> list:
    """``values`` when none repeats; ValueError saying which list repeats otherwise."""
    if len(set(values)) != len(values):
        raise ValueError(f"{what} repeat in {values}; list each once")
    return values


def known_encodings(names: list[str]) -> list[str]:
    """``names`` when each is a registered positional encoding, listed once."""
    from mathkit.models.positional import known_positional  # imports torch: only when checked

    known = known_positional()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown positional encoding(s) {unknown}; known: {', '.join(known)}")
    return unique(names, "positional encodings")


class NeoXRuns(BaseModel):
    """A second grid on a pretrained GPT-NeoX (Pythia): the same data, formats and test set as the
    small models, each run swapping the rotary embedding of every attention layer for one encoding
    and training LoRA on the attention projections with the encoding's own parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    base_model: str = Field(min_length=1)  # hub id (EleutherAI/pythia-410m), folder or random stand-in
    positional_encodings: list[str] = Field(min_length=1)
    formats: list[Format] = Field(default_factory=lambda: ["cot"], min_length=1)  # a subset of the top-level formats
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    model_dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # the frozen base's weights
    lora_r: int = Field(32, gt=0)
    lora_alpha: float = Field(64.0, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    pe_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pe_layers: list[int] | None = None
    eval_batch_size: int = Field(64, gt=0)
    training: dict[str, Any] = Field(default_factory=dict)  # SFTConfig fields over NEOX_TRAINING

    @field_validator("positional_encodings")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        return known_encodings(names)

    @field_validator("pe_options")
    @classmethod
    def _options_of_listed(cls, options: dict[str, dict], info: ValidationInfo) -> dict[str, dict]:
        stray = sorted(set(options) - set(info.data.get("positional_encodings") or []))
        if stray:
            raise ValueError(f"options for {stray}, which are not in this block's positional_encodings")
        return options

    @field_validator("training")
    @classmethod
    def _training_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        from mathkit.training.config import check_training

        return check_training({**NEOX_TRAINING, **block})

    def recipe(self):
        """The :class:`~mathkit.training.ablation_models.NeoXRecipe` of every run of this block."""
        from mathkit.training.ablation_models import NeoXRecipe

        return NeoXRecipe(self.base_model, dtype=self.model_dtype, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
                          lora_dropout=self.lora_dropout,
                          gradient_checkpointing=bool(self.training.get("activation_checkpointing")),
                          pe_options=self.pe_options, pe_layers=self.pe_layers)

    def run_settings(self, data_settings: dict[str, Any]) -> dict[str, Any]:
        """What makes two runs of this block the same run: the shared data settings and this
        block's model and training (not its lists of encodings, formats and seeds)."""
        own = self.model_dump(exclude={"positional_encodings", "formats", "seeds", "pe_options"})
        return {**data_settings, "neox": own}


class PeAblationParams(TrainingParams):
    """The grid, data, model, training and evaluation settings of the PE ablation notebook."""

    output_dir: str = "reports/04_pe_ablation"
    training: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAINING))

    # the grid: one model per (encoding, format, seed)
    positional_encodings: list[str] = Field(default_factory=lambda: ["rope", "nope"], min_length=1)
    formats: list[Format] = Field(default_factory=lambda: ["reversed"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)  # of model init and training data

    # data: additions, operand lengths uniform in 1..max_digits for training, 1..2*max_digits for
    # testing (the evaluation set is drawn with the top-level `seed`, the same for every run)
    max_digits: int = Field(3, ge=1, le=MAX_DIGITS)
    n_train: int = Field(12800, gt=0)   # per seed; steps x batch sees each once
    n_val: int = Field(200, gt=0)       # in-distribution validation loss (perplexity)
    n_eval: int = Field(800, gt=0)      # test set over the 2N x 2N operand-length square

    # model: the same size for every run; the encoding is the only architectural difference
    model_size: Literal["small", "medium", "large"] = "small"
    max_length: int = Field(128, ge=16, le=4096)  # context; the longest test example must fit
    # options per encoding name, e.g. {rope: {rope_theta: 500.0}}; others take their defaults
    pe_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pe_layers: list[int] | None = None  # layers that get the encoding (None: the encoding's default)

    # GPT-NeoX (Pythia) grids with the encoding swapped in; empty: none (they need a GPU and the hub)
    neox: list[NeoXRuns] = Field(default_factory=list)

    # runs trained at once, each in its own process on one thread (e.g. 2 on a 2-core CPU); 1: in the
    # notebook's process, on `threads` threads
    workers: int = Field(1, ge=1, le=64)

    # evaluation and display
    eval_batch_size: int = Field(256, gt=0)
    max_new_tokens: int = Field(0, ge=0)  # 0: long enough for the longest test completion
    n_samples_shown: int = Field(5, ge=0)

    @field_validator("positional_encodings")
    @classmethod
    def _known_positional(cls, names: list[str]) -> list[str]:
        return known_encodings(names)

    @field_validator("formats")
    @classmethod
    def _unique_formats(cls, formats: list[str]) -> list[str]:
        return unique(formats, "formats")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        return unique(seeds, "seeds")

    @field_validator("max_length")
    @classmethod
    def _longest_test_example_fits(cls, value: int, info: ValidationInfo) -> int:
        from mathkit.data.arithmetic import count_tokens, format_example

        digits, formats = info.data.get("max_digits"), info.data.get("formats")
        if digits and formats:
            top = 10 ** (2 * digits) - 1  # all nines: a carry in every column, the longest trace
            longest = max(count_tokens(format_example(top, top, "+", f)["text"]) for f in formats)
            if longest > value:
                raise ValueError(f"{2 * digits}-digit test additions take up to {longest} tokens in "
                                 f"{formats}; raise max_length to at least {longest} or lower max_digits")
        return value

    @field_validator("pe_options")
    @classmethod
    def _options_build_a_model(cls, options: dict[str, dict], info: ValidationInfo) -> dict[str, dict]:
        names = info.data.get("positional_encodings") or []
        stray = sorted(set(options) - set(names))
        if stray:
            raise ValueError(f"options for {stray}, which are not in positional_encodings {names}")
        for name in names:
            check_model(name, options.get(name, {}), None, info.data.get("model_size", "small"))
        return options

    @field_validator("pe_layers")
    @classmethod
    def _layers_exist(cls, layers: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if layers is not None:
            for name in info.data.get("positional_encodings") or []:
                options = (info.data.get("pe_options") or {}).get(name, {})
                check_model(name, options, layers, info.data.get("model_size", "small"))
        return layers

    @field_validator("neox")
    @classmethod
    def _neox_formats_are_tested(cls, blocks: list[NeoXRuns], info: ValidationInfo) -> list[NeoXRuns]:
        formats = info.data.get("formats") or []
        for block in blocks:
            missing = [f for f in block.formats if f not in formats]
            if missing:
                raise ValueError(f"neox block {block.base_model!r}: formats {missing} are not in the top-level "
                                 f"formats {formats}, which decide the test sets")
        return blocks

    def run_settings(self) -> dict[str, Any]:
        """What makes two runs of one (encoding, format, seed) the same run: every setting but the
        grid's lists and where things go (the runner adds the run's own encoding options)."""
        return {k: v for k, v in self.model_dump().items() if k not in NOT_RUN_SETTINGS}


def check_model(name: str, options: dict, layers: list[int] | None, size: str) -> None:
    """Build the decoder config of one encoding (no weights) as :func:`mathkit.models.build_decoder`
    would for this notebook's tokenizer: bad options or layers fail here, before any data or model,
    with the decoder's own message."""
    from mathkit.models.char_tokenizer import build_char_tokenizer
    from mathkit.models.config import MODEL_SIZES, MathDecoderConfig
    from mathkit.models.decoder import digit_token_ids
    from mathkit.models.positional import positional_class

    tokenizer = build_char_tokenizer()
    options = dict(options)
    try:
        if "digit_token_ids" in positional_class(name).default_options and options.get("digit_token_ids") is None:
            options["digit_token_ids"] = digit_token_ids(tokenizer)  # what build_decoder fills in
        MathDecoderConfig(**MODEL_SIZES[size], vocab_size=len(tokenizer) + len(HINT_LETTERS),
                          positional_encoding=name, pe_options=options, pe_layers=layers)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}: {err}") from None
