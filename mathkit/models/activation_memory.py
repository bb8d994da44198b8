"""What training keeps for the backward pass, and what generation caches, per token.

The counting follows Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models": sbh(34 + 5as/h) bytes per GPT layer): add up the tensors each operation saves
for its gradient. Adapted to the models and kernels here, and checked tensor by tensor against
what autograd saves (``torch.autograd.graph.saved_tensors_hooks``) for Llama, Gemma-3, GPT-NeoX and
the small decoder, full and LoRA, with and without padding:

* attention runs through SDPA's flash / memory-efficient kernels (the CPU's too), which keep q, k,
  v, the output and a log-sum-exp per head, no seq x seq scores; under a padding mask (batch > 1)
  transformers repeats GQA keys and values to every head and SDPA keeps its float mask, per layer;
* SwiGLU keeps gate, up, their activation and their product; a GELU MLP its two activations;
* a linear layer keeps its input only when its weight trains; a LoRA layer keeps its dropped-out
  input and the dropout mask (a bool on CUDA, a float on the CPU) per adapter;
* norms keep their input (transformers' RMSNorms in fp32) and, when their weight trains, the
  normalised input;
* gradient checkpointing keeps each block's input and recomputes one block at a time.

Positional encodings of the small decoder change what attention keeps: rotary ones copy q and k,
bias ones (ALiBi, T5, FIRE) keep a per-head bias as large as the mask (T5's buckets and FIRE's MLP
keep more: a lower bound for them).
"""

from __future__ import annotations

from mathkit.models.architectures import Architecture


def _norm_bytes(arch: Architecture, *, full: bool, p: int) -> int:
    """Per token, what one block's norms keep: input and 1/rms (LayerNorm: the mean too), and the
    normalised input when an RMSNorm weight trains. transformers' RMSNorms (Llama, Gemma) keep fp32."""
    h = arch.hidden
    if arch.family == "gpt_neox":  # parallel residual: both LayerNorms read the same input
        return h * p + 4 * 4
    sizes = [h, h] + ([h, h, arch.q_dim, arch.kv_dim] if arch.family == "gemma3" else [])  # + post, q/k norms
    wide = 4 if arch.family in ("llama", "gemma3") else p
    if arch.layer_norm:
        return sum(size * wide + 8 for size in sizes)
    return sum(size * wide * (2 if full else 1) + 4 for size in sizes)


def block_bytes(arch: Architecture, *, method: str, batch: int, seq_len: int, p: int, targets, rank: int,
                dropout: float, device: str, positional: str = "rotary") -> float:
    """Bytes one decoder block keeps for backward, per token (see the module docstring).
    ``positional``: the block's positional encoding kind (the small decoder's may differ by layer).

    Checked against the tensors autograd saves (``saved_tensors_hooks``) for each family, full and
    LoRA, on the CPU in fp32 (tests/test_models_activation_memory.py)."""
    h, q, k, i = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    full, hf = method == "full", arch.family in ("llama", "gemma3")
    repeat = arch.kv_heads != arch.heads and batch > 1  # transformers repeats GQA heads under a mask
    k_seen = q if repeat else k
    if arch.family != "mathkit_decoder":
        attention = q + 2 * k_seen + q  # rotated q and k, v, and the output
        if batch > 1:  # SDPA keeps its (float) padding mask, per layer
            attention += seq_len
    else:  # q, k and v are views of the fused output, which stays alive whole
        attention = (q + 2 * k) + q
        if positional == "rotary":  # rotated copies of q and k, and the layer's cos/sin
            attention += q + k_seen + arch.head_dim
        elif positional == "bias":  # the padding mask plus the bias, per head
            attention += arch.heads * seq_len
    mlp = 3 * i if arch.gated_mlp else i  # activation input, output and (gated) the up projection
    elements, extra_bytes = attention + mlp, _norm_bytes(arch, full=full, p=p) + arch.heads * 4  # + log-sum-exp
    # The input of each linear layer: kept once when its weight trains. o_proj reads SDPA's own output
    # (kept already) where q keeps the projection's (batch, seq, heads) layout, a reshaped copy where
    # rotation made q contiguous per head (GPT-NeoX's partial rotary, the small decoder's). LoRA keeps
    # its dropped-out input and dropout mask per adapter (a bool on CUDA, the compute dtype on the
    # CPU), or without dropout the plain input.
    o_reads_output = hf or (arch.family == "mathkit_decoder" and positional != "rotary")
    mask = 1 if device == "cuda" else p
    for reads, size in {"attn_in": h, "attn_out": q, "mlp_in": h, "mlp_mid": i}.items():
        shared = reads == "attn_out" and o_reads_output
        hit = [lin for lin in targets if lin.reads == reads]
        if full:
            elements += 0 if shared else size
        elif hit and dropout > 0:
            elements += size * len(hit)
            extra_bytes += size * len(hit) * mask
        elif hit and not shared:
            elements += size
    if not full:
        elements += rank * len(targets)  # lora_A's output, kept by lora_B
    return elements * p + extra_bytes


def _outside_blocks_bytes(arch: Architecture, *, full: bool, p: int) -> int:
    """Per token, what training keeps outside the blocks: the token ids (int64), the final norm's
    input (and normalised input when its weight trains), the head's input when it trains, and
    transformers' rotary cos/sin, shared by the blocks."""
    wide = 4 if arch.family in ("llama", "gemma3") else p
    norm = arch.hidden * wide + 4 + (arch.hidden * wide if full and not arch.layer_norm else 0)
    rotary = 2 * arch.head_dim * p if arch.family != "mathkit_decoder" else 0
    return 8 + norm + (arch.hidden * p if full else 0) + rotary


def activation_bytes(arch: Architecture, *, method: str, batch: int, seq_len: int, p: int, targets=(), rank: int = 0,
                     dropout: float = 0.0, device: str = "cpu", checkpointing: bool = False,
                     quantized: bool = False) -> float:
    """What a training step keeps for backward (``method`` full, lora or qlora), or what one
    forward of generation holds at once (``inference``), for ``batch`` x ``seq_len`` tokens; ``p``
    bytes per value of the compute dtype, ``targets`` the LoRA-adapted layers
    (:class:`~mathkit.models.architectures.Linear`)."""
    tokens = batch * seq_len
    if method == "inference":  # transient: one block's largest live set, no grad
        repeat = arch.kv_heads != arch.heads and batch > 1
        attention = 3 * arch.q_dim + 2 * (arch.q_dim if repeat else arch.kv_dim)
        mlp = (3 if arch.gated_mlp else 2) * arch.intermediate
        live = tokens * (2 * arch.hidden + max(attention, mlp)) * p
    else:
        settings = dict(method=method, batch=batch, seq_len=seq_len, p=p, targets=targets, rank=rank, dropout=dropout,
                        device=device)
        with_pe = block_bytes(arch, positional=arch.positional_kind, **settings)
        without = block_bytes(arch, positional="none", **settings)
        n_pe = arch.layers if arch.positional_layers is None else arch.positional_layers
        if checkpointing:  # each block's input, and one block recomputed at a time
            largest = max(b for b, n in ((with_pe, n_pe), (without, arch.layers - n_pe)) if n)
            kept = arch.layers * arch.hidden * p + largest
        else:
            kept = n_pe * with_pe + (arch.layers - n_pe) * without
        live = tokens * (kept + _outside_blocks_bytes(arch, full=method == "full", p=p))
    if quantized:  # bitsandbytes dequantizes one weight at a time, in the compute dtype
        live += max(lin.inputs * lin.outputs for lin in arch.linears()) * p
    return live


def kv_cache_bytes(arch: Architecture, *, batch: int, seq_len: int, p: int) -> float:
    """Keys and values of every layer for ``seq_len`` tokens; sliding-window layers keep their window."""
    window = arch.sliding_window or seq_len
    full_layers = arch.layers - arch.sliding_layers
    kept = full_layers * seq_len + arch.sliding_layers * min(seq_len, window)
    return 2 * batch * arch.kv_dim * kept * p
