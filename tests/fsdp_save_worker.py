"""One process of the FSDP save test (``tests/test_distributed_training.py``), started twice by
``torch.distributed.run``: a tiny Llama (whole, or with a LoRA adapter) sharded by torch's
``fully_shard`` over gloo, trained a few steps on different data in each process, then saved the
way ``mathkit train`` saves: shards gathered by every process, written by the main one.

Usage: python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_save_worker.py OUT {full,lora} BASE
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mathkit.models import load, save  # noqa: E402
from mathkit.training import lora  # noqa: E402
from mathkit.training.distributed import full_state_dict  # noqa: E402


def main(out: Path, kind: str, base: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model, tokenizer = load(base, device="cpu")
    if kind == "lora":
        model = lora.attach_lora(model, lora.build_lora_config(r=4, alpha=8.0, dropout=0.0,
                                                               target_modules=["q_proj", "v_proj"]))
    for layer in model.get_decoder().layers if kind == "full" else model.base_model.model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    sharded = [p for p in model.parameters() if isinstance(p, DTensor)]
    local = sum(p.to_local().numel() for p in sharded)
    held = torch.tensor([local])
    dist.all_reduce(held)  # what the processes hold together
    whole = sum(p.numel() for p in sharded)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(100 + rank)  # each process its own data
    losses = []
    for _ in range(4):
        ids = torch.randint(3, len(tokenizer), (2, 12), generator=generator)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    probe = torch.arange(3, 15).reshape(2, 6) % len(tokenizer)
    with torch.no_grad():
        logits = model(input_ids=probe).logits  # every process runs the sharded forward
    weights = full_state_dict(model)  # collective
    if rank == 0:
        folder = save(model, tokenizer, out / "model", state_dict=weights)
        torch.save({"probe": probe, "logits": logits}, out / "probe.pt")
        (out / "run.json").write_text(json.dumps({"local": local, "held": held.item(), "whole": whole, "losses": losses,
                                                  "folder": str(folder)}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
