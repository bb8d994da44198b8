"""Which process this is when training runs under ``accelerate launch`` or ``torchrun``, and a
record of which training examples each process consumed.

Every process of a data-parallel run executes the same code; the Trainer shards the batches and
averages the gradients. What only one process may do (write a file, delete old checkpoints,
convert a model into a shared cache) goes through :func:`is_main_process`,
:func:`main_process_first` and :func:`wait_for_everyone`. In a single plain process they are
trivially true / no-ops.

accelerate's ``PartialState`` answers these questions. It is a singleton and the first call
decides the communication backend, so :func:`process_state` creates it with ``cpu`` set exactly as
:mod:`mathkit.training.policy` sets ``use_cpu`` (no CUDA: CPU): the state made here before a
Trainer exists is the one the Trainer would make (gloo on CPU, NCCL on GPUs). Under DeepSpeed
without CUDA (its CPU accelerator, ``DS_ACCELERATOR=cpu``: how the tests run ZeRO here) accelerate
must not be told ``cpu`` (that turns DeepSpeed off) but needs the backend named: gloo.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from transformers import TrainerCallback

from mathkit.errors import DataError
from mathkit.jsonl import write_jsonl

log = logging.getLogger(__name__)

TRACE_FILE = "rank-{rank}.jsonl"


def launched() -> bool:
    """True in a process started by ``accelerate launch`` / ``torchrun`` with others (``WORLD_SIZE``
    > 1). A plain process (a notebook, a test) then never creates accelerate's state here, so
    nothing in it changes before its Trainer decides the state itself."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state():
    """accelerate's ``PartialState`` of this process (created on first use, see the module doc)."""
    import torch
    from accelerate import PartialState

    name_deepspeed_accelerator()
    cpu = not torch.cuda.is_available()
    if cpu and deepspeed_launched():  # DeepSpeed's CPU accelerator
        return PartialState(cpu=False, backend="gloo")
    return PartialState(cpu=cpu)


def name_deepspeed_accelerator() -> None:
    """Tell DeepSpeed, where it is installed, that a machine without CUDA has the CPU as its
    accelerator (``DS_ACCELERATOR=cpu``), unless the variable is set already.

    accelerate imports DeepSpeed inside every Trainer once it is installed, and DeepSpeed, left to
    guess, prints a warning ("Setting accelerator to CPU ...") into the run's output: a notebook's
    training cell, a report. Named, it makes the same choice silently."""
    import torch

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def deepspeed_launched() -> bool:
    """True in a process that ``accelerate launch`` started with a DeepSpeed config."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def rank() -> int:
    """This process's index among all processes (0 in a single process)."""
    return process_state().process_index if launched() else 0


def world_size() -> int:
    """How many processes train together (1 in a single process)."""
    return process_state().num_processes if launched() else 1


def is_main_process() -> bool:
    """True in the one process that writes shared files (rank 0)."""
    return process_state().is_main_process if launched() else True


def wait_for_everyone() -> None:
    """Block until every process gets here (e.g. until the main process has saved the model)."""
    if launched():
        process_state().wait_for_everyone()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block in the main process first, then in the others: for work that fills a
    shared cache (a converted model, a prepared data set) that the others then only read."""
    if not launched():
        yield
        return
    with process_state().main_process_first():
        yield


def full_state_dict(model) -> dict | None:
    """The whole weights of a model whose parameters are split across processes, gathered for
    saving: every process must call it (the gather is collective); the main process gets the full
    state dict on the CPU, the others an empty one. None for a model whose parameters are whole in
    this process (one process, DDP, DeepSpeed ZeRO-1/2): save it as it is.

    A split parameter cannot be saved as it is: under FSDP2 (``fully_shard``, what accelerate's
    FSDP config applies) it is a ``DTensor`` holding this process's rows; under DeepSpeed ZeRO-3
    it is an empty tensor whose share lives in ``ds_tensor``. ``save_pretrained`` on either would
    write a shard, or nothing."""
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        return _gather_zero3(model)
    if not any(isinstance(p, DTensor) for p in params):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _gather_zero3(model) -> dict:
    """ZeRO-3's partitions gathered one module at a time with DeepSpeed's ``GatheredParameters``
    (its documented way to see whole weights), so no GPU holds more than one module's whole
    weights at once; the main process copies each to the CPU. The keys are ``model.state_dict()``'s:
    a tied weight under both names, persistent buffers (whole in every process) included."""
    import deepspeed

    main, state, copies = is_main_process(), {}, {}
    for prefix, module in model.named_modules():
        own = list(module.named_parameters(recurse=False, remove_duplicate=False))
        with deepspeed.zero.GatheredParameters([p for _, p in own], modifier_rank=None):
            if main:
                buffers = [(n, b) for n, b in module.named_buffers(recurse=False)
                           if n not in module._non_persistent_buffers_set]
                for name, tensor in own + buffers:
                    # a tied weight is one copy under both names, so save_pretrained writes it once
                    if id(tensor) not in copies:
                        copies[id(tensor)] = tensor.detach().to("cpu", copy=True)
                    state[f"{prefix}.{name}" if prefix else name] = copies[id(tensor)]
    return state


def trace_path(folder: str | Path, process: int) -> Path:
    """The file in ``folder`` where process ``process`` records its training examples."""
    return Path(folder) / TRACE_FILE.format(rank=process)


class ExampleTraceCallback(TrainerCallback):
    """Record, in each process, which training examples every optimizer step consumed.

    Writes ``folder/rank-<N>.jsonl`` at the end of training, one row per optimizer step:
    ``{"step": s, "rank": N, "examples": [i, ...]}``, where ``i`` indexes the training set as the
    Trainer prepared it (an example occurring twice is named by its first index; ``None``: a row
    that matched no example). Under data parallelism the ranks' lists are disjoint within an epoch.

    The Trainer's batches never reach a callback, so the examples are read where they meet the
    model: a forward pre-hook on the training model sees each micro-batch's ``input_ids`` (padding
    removed by the attention mask), looked up among the prepared data set's ``input_ids``.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.rows: list[dict] = []
        self._index: dict[tuple[int, ...], int] = {}
        self._batch: list[int | None] = []
        self._hook = None
        self._rank = 0

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        columns = getattr(dataset, "column_names", None) or []
        if "input_ids" not in columns:
            raise DataError("the example trace needs a tokenized training set with an input_ids column "
                            f"(got columns {columns}); it follows mathkit.training.train's SFT data")
        for i, ids in enumerate(dataset["input_ids"]):
            self._index.setdefault(tuple(ids), i)
        self._rank = args.process_index
        self.rows = []
        self._hook = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if not module.training:  # evaluation batches are not training data
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        mask = kwargs.get("attention_mask")
        for i, row in enumerate(ids):
            real = row[mask[i].bool()] if mask is not None else row
            self._batch.append(self._index.get(tuple(real.tolist())))

    def on_step_end(self, args, state, control, **kwargs):
        self.rows.append({"step": int(state.global_step), "rank": self._rank, "examples": self._batch})
        self._batch = []

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        path = write_jsonl(self.rows, trace_path(self.folder, self._rank))
        unmatched = sum(i is None for row in self.rows for i in row["examples"])
        if unmatched:
            log.warning("%d training rows matched no example of the training set (see %s)", unmatched, path)
