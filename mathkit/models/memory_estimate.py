"""How much memory a model needs to train or run, before it is loaded.

``estimate(model, method, seq_len, batch, ...)`` returns a :class:`MemoryEstimate`: weights,
LoRA adapter, gradients, optimizer states, activations, logits, KV cache and the framework's own
overhead, in bytes, summing to ``total_bytes``. ``model`` is anything
:func:`mathkit.models.architectures.architecture` reads (a known name, a config, a folder).

How each part is counted, and why:

* **Weights**: parameters x bytes of their dtype. 4-bit NF4 (bitsandbytes) stores 0.5 bytes per
  weight plus one absmax per block of 64 (1 byte with double quantization, which adds an fp32 per
  256 blocks; 4 bytes without); int8 (LLM.int8) 1 byte plus an fp32 scale per output row. Only the
  matrices of ``nn.Linear`` layers are quantized: the embeddings (Gemma-3-270m's tied 262k x 640
  embedding, 63% of its weights, which notebook 03 found unquantized), the output head, norms and
  biases keep the compute dtype, or fp32 under QLoRA, since peft's
  ``prepare_model_for_kbit_training`` upcasts every non-4-bit parameter to fp32.
* **LoRA adapter**: r x (in + out) per targeted layer, in fp32 (peft upcasts bf16/fp16 adapters);
  its gradients and optimizer states follow. Full fine-tuning trains every parameter in its dtype.
* **Optimizer states**: torch AdamW keeps two moments in the parameter's dtype; bitsandbytes'
  32-bit AdamW two fp32 moments; its 8-bit AdamW two bytes plus an fp32 absmax per 256 values
  (it keeps tensors under 4096 values in 32 bits: left out). Paged optimizers (CUDA only) put
  their state in unified memory that bitsandbytes moves to CPU RAM when the GPU runs short: it is
  reported as ``paged_optimizer_states`` and not counted in the device total.
* **Activations**: what autograd keeps for the backward pass, per decoder block and token, counted
  like Korthikanti et al. 2022 and checked against autograd (:mod:`mathkit.models.activation_memory`).
  Under autocast (weights stored wider than the compute dtype) the compute-dtype copy of each
  matrix lives until backward: ``autocast_copies``.
* **Logits**: training keeps batch x seq x vocab fp32 values three times at the start of the
  backward pass (log-probabilities and two gradients; measured here as 3.09 copies on CPU): large
  for Gemma's 262k vocabulary. Generation computes the last position's logits only.
* **KV cache** (inference): keys and values of every layer for ``seq_len`` tokens in the compute
  dtype; sliding-window layers (Gemma-3) keep at most their window.
* **Overhead**: on a GPU the CUDA context and cuBLAS workspace (:data:`CUDA_OVERHEAD_BYTES`); on
  the CPU the resident size of the Python process with torch, transformers and a tokenizer
  (:data:`CPU_INFERENCE_OVERHEAD_BYTES`), or with TRL, peft, datasets and a built trainer
  (:data:`CPU_TRAINING_OVERHEAD_BYTES`), both measured here. CPU training also pays
  ``allocator_slack`` (:data:`CPU_ALLOCATOR_SLACK`): freed step buffers the C allocator keeps.
  On a GPU, torch's caching allocator reserves somewhat more than this (allocated) total.

The total is the peak when everything above is alive at once. With gradient accumulation it is:
gradients persist while the next micro-batch's activations are built. Without it, backward frees
activations as gradients appear, so full fine-tuning can peak lower by up to the smaller of the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mathkit.errors import ParamsError
from mathkit.models.activation_memory import activation_bytes, kv_cache_bytes
from mathkit.models.architectures import Architecture, architecture, known_names

__all__ = ["MemoryEstimate", "architecture", "estimate", "estimate_training_run", "known_names"]

GiB = 1024**3
MiB = 1024**2

METHODS = ("full", "lora", "qlora", "inference")
FLOAT_DTYPES = ("float32", "bfloat16", "float16")
QUANTIZED_DTYPES = ("nf4", "int8")
_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16",
                  "4bit": "nf4", "int4": "nf4", "4-bit": "nf4", "8bit": "int8", "8-bit": "int8"}
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# optimizer -> (bytes of state per trainable value, or None for "two moments in the parameter's
# dtype", paged): torch's AdamW, bitsandbytes' 32-bit and 8-bit AdamW and their paged versions, and
# SGD without momentum. transformers' ``optim`` names for them are accepted too.
OPTIMIZERS: dict[str, tuple[float | None, bool]] = {
    "adamw": (None, False),
    "adamw_32bit": (8.0, False),
    "adamw_8bit": (2 + 8 / 256, False),
    "paged_adamw": (8.0, True),
    "paged_adamw_8bit": (2 + 8 / 256, True),
    "sgd": (0.0, False),
}
_OPTIMIZER_ALIASES = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_bnb_8bit": "adamw_8bit",
                      "paged_adamw_32bit": "paged_adamw"}

# The CUDA context (kernels loaded lazily) and cuBLAS workspace that torch holds on a GPU before any
# tensor: commonly reported as 0.3-0.6 GiB with torch 2.x; the middle is taken (not measured here:
# this machine has no GPU).
CUDA_OVERHEAD_BYTES = 512 * MiB
# Resident size of a Python process here before a model is loaded (torch 2.13, transformers 5.24):
# transformers and a tokenizer (inference: 430); TRL, peft and datasets imported and a trainer built
# (training: 450 before the model, 556 when the first step starts).
CPU_INFERENCE_OVERHEAD_BYTES = 430 * MiB
CPU_TRAINING_OVERHEAD_BYTES = 560 * MiB

# glibc keeps the buffers a training step frees resident, and the next step's allocations reuse them
# only in part: from the second step on the CPU peak held this much more than the activations and
# logits (measured here: 0.48 and 0.40 for the small and medium decoders, 0.32 for SmolLM2 LoRA).
CPU_ALLOCATOR_SLACK = 0.4

TRAINING_LOGIT_BYTES = 12  # fp32 log-probabilities + two fp32 gradients per logit (see the docstring)
NF4_BLOCK = 64


@dataclass(frozen=True)
class MemoryEstimate:
    """One estimate: its settings, the parameter counts and the parts, in bytes."""

    model: str
    method: str
    settings: dict
    parameters: int
    trainable_parameters: int
    weights: int = 0
    adapter: int = 0
    gradients: int = 0
    optimizer_states: int = 0
    autocast_copies: int = 0
    activations: int = 0
    logits: int = 0
    kv_cache: int = 0
    allocator_slack: int = 0
    overhead: int = 0
    paged_optimizer_states: int = 0  # may live in CPU RAM: not in total_bytes
    source: str = field(default="", compare=False)

    PARTS = ("weights", "adapter", "gradients", "optimizer_states", "autocast_copies", "activations", "logits",
             "kv_cache", "allocator_slack", "overhead")

    def parts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.PARTS}

    @property
    def total_bytes(self) -> int:
        return sum(self.parts().values())

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GiB

    def as_dict(self) -> dict:
        """Plain numbers for results.json: settings, parameter counts, each part and the total (bytes)."""
        return {"model": self.model, "method": self.method, "source": self.source, **self.settings,
                "parameters": self.parameters,
                "trainable_parameters": self.trainable_parameters, **self.parts(),
                "paged_optimizer_states": self.paged_optimizer_states, "total_bytes": self.total_bytes}

    def describe(self) -> str:
        """One line: model, method and settings."""
        s = self.settings
        method = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA", "inference": "inference"}[self.method]
        if self.method in ("lora", "qlora"):
            method += f" (r={s['lora_rank']}, {s['lora_targets']})"
        text = (f"{self.model}, {method}, {s['dtype']} weights, {s['compute_dtype']} compute, "
                f"batch {s['batch']} x {s['seq_len']} tokens, {s['device']}")
        if self.method != "inference":
            text += f", {s['optimizer']}" + (", gradient checkpointing" if s["gradient_checkpointing"] else "")
        return text

    def table(self) -> str:
        """A short table a notebook prints before it loads the model (parts that are zero left out)."""
        labels = {"weights": "weights", "adapter": "LoRA adapter", "gradients": "gradients",
                  "optimizer_states": "optimizer states", "autocast_copies": "autocast weight copies",
                  "activations": "activations", "logits": "logits (fp32)", "kv_cache": "KV cache",
                  "allocator_slack": "allocator slack (CPU)", "overhead": "framework overhead"}
        lines = [f"Memory estimate: {self.describe()}",
                 f"  {self.parameters:,} parameters, {self.trainable_parameters:,} trained"]
        lines += [f"  {labels[name]:<24}{_human(value):>12}" for name, value in self.parts().items() if value]
        if self.paged_optimizer_states:
            lines.append(f"  {'(paged optimizer states':<24}{_human(self.paged_optimizer_states):>12}"
                         "  in CPU RAM when the GPU runs short; not in the total)")
        lines.append(f"  {'total':<24}{_human(self.total_bytes):>12}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def parameter_bytes(model) -> int:
    """Bytes a built model's parameters take in memory, as they are stored (a tied tensor once:
    ``parameters()`` yields each shared tensor once); buffers are not counted. The measured
    counterpart of the estimate's ``weights``, and the "torch" size the edge exports compare to."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _human(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


# ---- settings ---------------------------------------------------------------------------------

def _dtype(value: str, what: str) -> str:
    key = str(value).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in FLOAT_DTYPES + QUANTIZED_DTYPES:
        raise ParamsError(f"unknown {what} {value!r}; use one of {', '.join(FLOAT_DTYPES + QUANTIZED_DTYPES)} "
                          "(or fp32, bf16, fp16, 8bit, 4bit)")
    return key


def _optimizer(value: str) -> str:
    key = _OPTIMIZER_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if key not in OPTIMIZERS:
        raise ParamsError(f"unknown optimizer {value!r} for the memory estimate; use one of "
                          f"{', '.join([*OPTIMIZERS, *_OPTIMIZER_ALIASES])}")
    return key


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamsError(f"{what} must be a positive integer, got {value!r}")
    return value


def _resolve(method, device, dtype, compute_dtype, optimizer, gradient_checkpointing, lora_rank, lora_dropout):
    """Checked, defaulted settings; ParamsError naming what does not go together."""
    if method not in METHODS:
        raise ParamsError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise ParamsError(f"device must be 'cuda' or 'cpu', got {device!r}")
    if dtype is None:
        dtype = "nf4" if method == "qlora" else ("bfloat16" if device == "cuda" else "float32")
    dtype = _dtype(dtype, "dtype")
    quantized = dtype in QUANTIZED_DTYPES
    if method == "qlora" and not quantized:
        raise ParamsError(f"QLoRA keeps the base quantized: dtype 'nf4' (4-bit) or 'int8', not {dtype!r}; "
                          "for LoRA on a float base use method='lora'")
    if method == "full" and quantized:
        raise ParamsError(f"full fine-tuning trains every weight, and {dtype} weights cannot be trained: use dtype "
                          "float32, bfloat16 or float16 (or method='qlora' for LoRA on a quantized base)")
    if method == "lora" and quantized:
        raise ParamsError(f"LoRA on {dtype} weights is QLoRA: use method='qlora', or a float dtype (float32, "
                          "bfloat16, float16) for LoRA")
    if compute_dtype is None:
        compute_dtype = dtype if not quantized else ("bfloat16" if device == "cuda" else "float32")
    compute_dtype = _dtype(compute_dtype, "compute_dtype")
    if compute_dtype not in FLOAT_DTYPES:
        raise ParamsError(f"compute_dtype must be a float dtype ({', '.join(FLOAT_DTYPES)}), got {compute_dtype!r}")
    if method == "inference":
        if optimizer is not None or gradient_checkpointing:
            raise ParamsError("inference has no optimizer and nothing to checkpoint: drop optimizer= and "
                              "gradient_checkpointing=, or pick a training method (full, lora, qlora)")
    else:
        optimizer = _optimizer(optimizer or "adamw")
        if OPTIMIZERS[optimizer][1] and device == "cpu":
            raise ParamsError(f"{optimizer} pages GPU memory to the CPU; on device='cpu' use adamw or adamw_8bit")
    if method in ("lora", "qlora"):
        lora_rank = _positive_int(16 if lora_rank is None else lora_rank, "lora_rank")
        if not 0 <= lora_dropout < 1:
            raise ParamsError(f"lora_dropout must lie in [0, 1), got {lora_dropout!r}")
    elif lora_rank is not None:
        raise ParamsError(f"lora_rank is for method 'lora' or 'qlora', not {method!r}")
    return device, dtype, compute_dtype, optimizer, lora_rank


# ---- the parts --------------------------------------------------------------------------------

def _quantized_weight_bytes(arch: Architecture, dtype: str, double_quant: bool) -> float:
    n = arch.quantizable_parameters
    if dtype == "int8":  # one fp32 scale per output row (the vision tower's rows left out: < 0.5%)
        return n + 4 * arch.layers * sum(lin.outputs for lin in arch.linears())
    blocks = n / NF4_BLOCK
    absmax = blocks * (1 + 4 / 256) if double_quant else blocks * 4
    return n / 2 + absmax


def _weights(arch: Architecture, method: str, dtype: str, compute_dtype: str, double_quant: bool) -> float:
    if dtype in FLOAT_DTYPES:
        return arch.parameters * _BYTES[dtype]
    rest = "float32" if method == "qlora" else compute_dtype  # peft's k-bit preparation upcasts to fp32
    wide = arch.parameters - arch.quantizable_parameters
    return _quantized_weight_bytes(arch, dtype, double_quant) + wide * _BYTES[rest]


def estimate(model, method: str = "inference", seq_len: int = 512, batch: int = 1, *, dtype: str | None = None,
             compute_dtype: str | None = None, gradient_checkpointing: bool = False, optimizer: str | None = None,
             lora_rank: int | None = None, lora_targets="all-linear", lora_dropout: float = 0.05,
             double_quant: bool = True, device: str | None = None) -> MemoryEstimate:
    """The memory ``model`` needs for ``method`` on ``batch`` sequences of ``seq_len`` tokens.

    ``method``: ``full`` (every weight trained), ``lora``, ``qlora`` (LoRA on a 4-bit or int8
    base) or ``inference`` (generation: a KV cache for ``seq_len`` tokens). ``dtype``: how the
    weights are stored (float32, bfloat16, float16, int8, nf4; default nf4 for QLoRA, else
    bfloat16 on a GPU and float32 on the CPU); ``compute_dtype``: activations and KV cache (default
    the weights' float dtype, else bfloat16 on a GPU, float32 on the CPU); a compute dtype narrower
    than float weights means autocast. ``optimizer``: adamw (torch), adamw_32bit, adamw_8bit,
    paged_adamw, paged_adamw_8bit, sgd, or transformers' ``optim`` names for them. ``lora_targets``:
    ``"all-linear"``, ``"attention"``, ``"mlp"`` or module names. ``device``: ``cuda`` or ``cpu``
    (default: cuda when torch sees one), which decides the overhead.
    """
    arch = architecture(model)
    seq_len, batch = _positive_int(seq_len, "seq_len"), _positive_int(batch, "batch")
    device, dtype, compute_dtype, optimizer, rank = _resolve(method, device, dtype, compute_dtype, optimizer,
                                                             gradient_checkpointing, lora_rank, lora_dropout)
    quantized, p = dtype in QUANTIZED_DTYPES, _BYTES[compute_dtype]
    training = method != "inference"
    targets = arch.lora_targets(lora_targets) if method in ("lora", "qlora") else ()
    adapter_params = arch.layers * rank * sum(lin.inputs + lin.outputs for lin in targets) if targets else 0
    trainable = arch.parameters if method == "full" else adapter_params
    parts: dict[str, float] = {"weights": _weights(arch, method, dtype, compute_dtype, double_quant),
                               "adapter": adapter_params * 4}
    if training:
        grad_bytes = _BYTES[dtype] if method == "full" else 4  # adapters are fp32 (peft upcasts them)
        state_per_value, paged = OPTIMIZERS[optimizer]
        state = trainable * (2 * grad_bytes if state_per_value is None else state_per_value)
        parts["gradients"] = trainable * grad_bytes
        parts["optimizer_states"] = 0 if paged else state  # paged: CUDA only (checked)
        if not quantized and _BYTES[dtype] > p:  # autocast keeps the narrow copy of each matrix for backward
            parts["autocast_copies"] = (arch.linear_weight_parameters + arch.vocab * arch.hidden) * p
        parts["logits"] = batch * seq_len * arch.vocab * TRAINING_LOGIT_BYTES
    else:
        parts["logits"] = batch * arch.vocab * (p + 4)
        parts["kv_cache"] = kv_cache_bytes(arch, batch=batch, seq_len=seq_len, p=p)
    parts["activations"] = activation_bytes(arch, method=method, batch=batch, seq_len=seq_len, p=p, targets=targets,
                                            rank=rank or 0, dropout=lora_dropout, device=device,
                                            checkpointing=gradient_checkpointing, quantized=quantized)
    if device == "cuda":
        parts["overhead"] = CUDA_OVERHEAD_BYTES
    else:
        parts["overhead"] = CPU_TRAINING_OVERHEAD_BYTES if training else CPU_INFERENCE_OVERHEAD_BYTES
        if training:
            parts["allocator_slack"] = CPU_ALLOCATOR_SLACK * (parts["activations"] + parts["logits"])
    settings = {"seq_len": seq_len, "batch": batch, "dtype": dtype, "compute_dtype": compute_dtype, "device": device,
                "optimizer": optimizer, "gradient_checkpointing": bool(gradient_checkpointing), "lora_rank": rank,
                "lora_targets": lora_targets if isinstance(lora_targets, str) else ",".join(lora_targets),
                "lora_dropout": lora_dropout if targets else None,
                "double_quant": double_quant if dtype == "nf4" else None}
    paged_state = state if training and OPTIMIZERS[optimizer][1] else 0
    return MemoryEstimate(model=arch.name, method=method, settings=settings, parameters=arch.parameters,
                          trainable_parameters=trainable, source=arch.source,
                          paged_optimizer_states=math.ceil(paged_state),
                          **{name: math.ceil(value) for name, value in parts.items()})


def estimate_training_run(model, method: str, training: dict, *, seq_len: int | None = None,
                          **options) -> MemoryEstimate:
    """:func:`estimate` for a run set up by a ``training`` block (TRL ``SFTConfig`` fields, as the
    notebooks' parameter files write them), so that a notebook prints what it is about to need
    from the same settings its trainer gets: batch ``per_device_train_batch_size`` (transformers'
    default 8), sequence ``max_length`` (or ``seq_len``), ``gradient_checkpointing`` (or TRL's
    ``activation_checkpointing``), ``optim``, and ``bf16``/``fp16`` autocast as the compute dtype.
    ``options`` go to :func:`estimate` (dtype, LoRA rank and targets, device). Without a
    ``device`` the block is first adapted to this machine as the trainer adapts it
    (:func:`mathkit.training.policy.apply_machine_policy`: no paged optimizer or fp16 on a CPU)."""
    if method == "inference":
        raise ParamsError("estimate_training_run estimates training; use estimate(..., 'inference') for generation")
    if options.get("device") is None:
        from mathkit.training.policy import apply_machine_policy

        training = apply_machine_policy(training, quiet=True)
    seq_len = seq_len or training.get("max_length")
    if not seq_len:
        raise ParamsError("the training block has no max_length: pass seq_len= (the longest training example)")
    if "compute_dtype" not in options and (training.get("bf16") or training.get("fp16")):
        options["compute_dtype"] = "bfloat16" if training.get("bf16") else "float16"
    checkpointing = training.get("gradient_checkpointing") or training.get("activation_checkpointing")
    return estimate(model, method, seq_len=seq_len, batch=training.get("per_device_train_batch_size", 8),
                    gradient_checkpointing=bool(checkpointing), optimizer=training.get("optim") or None, **options)


def estimates_text(make) -> str:
    """The tables of the estimates ``make()`` returns, for a notebook to print before it loads a
    model; a model the estimator cannot read gives one line saying so (the estimate informs, it
    never stops a run)."""
    try:
        return "\n".join(e.table() for e in make())
    except ParamsError as err:
        return f"no memory estimate: {err}"
