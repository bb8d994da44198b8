"""Training under ``accelerate launch``: two CPU processes (DDP over gloo) run ``python -m mathkit
train`` for notebook 01's arithmetic decoder and for a LoRA run of notebook 02 on a tiny random
Llama. Each run must lower the loss, give the two ranks different examples, and save a model that
loads. The same under DeepSpeed ZeRO-3 (its CPU accelerator), where the weights are split across
the processes and must be gathered to be saved. The accelerate config files under
params/accelerate/ must load with accelerate's own parser.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mathkit.jsonl import read_jsonl
from mathkit.training.distributed import ExampleTraceCallback, trace_path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "params" / "accelerate"
ACCELERATE = Path(sys.executable).parent / "accelerate"

pytestmark = pytest.mark.usefixtures("one_thread")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, *train_args: str, config: Path = CONFIGS / "ddp_cpu.yaml") -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``mathkit train`` on 2 CPU processes with the accelerate ``config``
    file; fails the test with the log tail."""
    cmd = [str(ACCELERATE), "launch", "--config_file", str(config), "--num_processes", "2",
           "--main_process_port", str(free_port()), "-m", "mathkit", "train", "--profile", "smoke",
           "--output", str(out), "--trace-examples", *train_args]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "DS_ACCELERATOR": "cpu"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_jsonl(out / "metrics.jsonl") if row["kind"] == "train"]


def examples_by_rank(out: Path) -> list[list[int]]:
    return [[i for row in read_jsonl(trace_path(out / "examples", rank)) for i in row["examples"]]
            for rank in (0, 1)]


def check_two_ranks(out: Path, n_train: int, kind: str = "MULTI_CPU") -> None:
    """Both processes trained (the summary says 2, over gloo) on disjoint halves of one epoch."""
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["distributed_type"] == kind
    assert summary["n_train"] == n_train
    rank0, rank1 = examples_by_rank(out)
    assert None not in rank0 + rank1, "a training row matched no example"
    assert len(rank0) == len(rank1) == n_train // 2
    assert not set(rank0) & set(rank1), "the ranks trained on the same examples"
    assert sorted(rank0 + rank1) == list(range(n_train)), "one epoch covers every example once"


needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed is not installed (pip install -e '.[scale]', make scale)")


@pytest.mark.parametrize("config, kind", [
    (CONFIGS / "ddp_cpu.yaml", "MULTI_CPU"),
    # ZeRO-3 splits the weights across the 2 processes: the saved model is whole only if
    # mathkit train gathered them (save_pretrained on the split model writes empty tensors)
    pytest.param(CONFIGS / "deepspeed_zero3.yaml", "DEEPSPEED", marks=[needs_deepspeed, pytest.mark.slow]),
], ids=["ddp", "zero3"])
def test_arithmetic_decoder_on_two_processes(tmp_path, config, kind):
    from safetensors.torch import load_file

    from mathkit.models import load

    out = tmp_path / "arithmetic"
    # smoke profile: 240 examples, batch 8 per process: 15 steps of 2 x 8 are exactly one epoch
    launch(out, "--notebook", "01_arithmetic_cot", "--max-steps", "15",
           "--set", "training.eval_steps=15", "--set", "training.save_steps=15", config=config)
    check_two_ranks(out, n_train=240, kind=kind)
    curve = losses(out)
    assert curve[-1] < curve[0] - 0.5, curve
    model, tokenizer = load(out / "model", device="cpu")
    # the checkpoint's weights: the Trainer's own save (under ZeRO-3 gathered by DeepSpeed itself)
    saved = load_file(out / "checkpoints" / "checkpoint-15" / "model.safetensors")
    assert len(saved) > 10
    for name, tensor in model.state_dict().items():  # the saved model is the trained one
        if name in saved:
            torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    assert json.loads((out / "model" / "arithmetic_format.json").read_text())["ops"] == ["+"]
    ids = tokenizer("12+34=", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(input_ids=ids).logits).all()


@pytest.mark.parametrize("config, kind", [
    (CONFIGS / "ddp_cpu.yaml", "MULTI_CPU"),
    # every parameter split, the LoRA matrices too (by default ZeRO-3 keeps small ones whole)
    pytest.param(ROOT / "tests" / "accelerate" / "deepspeed_zero3_split_all.yaml", "DEEPSPEED",
                 marks=[needs_deepspeed, pytest.mark.slow]),
], ids=["ddp", "zero3"])
def test_lora_on_two_processes(tmp_path, config, kind):
    from mathkit.models import load, save
    from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    base_dir = save(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny_llama")
    out = tmp_path / "lora"
    # 32 short arithmetic problems, batch 2 per process: 8 steps of 2 x 2 are one epoch
    launch(out, "--notebook", "02_lora_sft", "--max-steps", "8",
           "--set", f"base_model={base_dir}",
           "--set", "train_sources=[{name: arithmetic, split: train, n: 40}]",
           "--set", "n_train=32", "--set", "n_val=4", "--set", "lora_r=8", "--set", "lora_alpha=16.0",
           "--set", "training.max_length=512", "--set", "training.learning_rate=1.0e-2",
           "--set", "training.eval_steps=4", config=config)
    check_two_ranks(out, n_train=32, kind=kind)
    curve = losses(out)
    assert curve[-1] < curve[0] - 0.05, curve
    assert not list(out.glob("checkpoints/checkpoint-*")), "keep_checkpoints is off: optimizer states go"
    tuned, tok = load(out / "adapter", device="cpu")
    base, _ = load(base_dir, device="cpu")
    ids = tok("assistant: 1+2=", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        moved = (tuned(input_ids=ids).logits - base(input_ids=ids).logits).abs().max()
    assert moved > 1e-4, "the saved adapter changes nothing: LoRA weights were not trained or saved"


@pytest.mark.parametrize("name, kind", [("ddp_cpu", "MULTI_GPU"), ("ddp_multi_gpu", "MULTI_GPU"),
                                        ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED"),
                                        ("deepspeed_zero3", "DEEPSPEED")])
def test_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type.value == kind and config.num_processes == 2 and config.num_machines == 1
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_fsdp_config_builds_an_fsdp2_plugin(monkeypatch):
    """The launcher turns fsdp.yaml into environment variables; accelerate's plugin reads them."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import FullyShardedDataParallelPlugin

    fsdp = load_config_from_file(str(CONFIGS / "fsdp.yaml")).fsdp_config
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", str(fsdp["fsdp_version"]))
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", fsdp["fsdp_auto_wrap_policy"])
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", str(fsdp["fsdp_reshard_after_forward"]).lower())
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", fsdp["fsdp_state_dict_type"])
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"


def test_deepspeed_on_the_cpu_keeps_deepspeed_on(monkeypatch):
    """Without CUDA the policy sets use_cpu, which turns DeepSpeed off in accelerate; under a
    DeepSpeed launch it names the gloo backend instead (DeepSpeed's CPU accelerator)."""
    from mathkit.training.policy import Machine, apply_machine_policy

    cpu = Machine(cuda=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    plain = apply_machine_policy({}, machine=cpu, quiet=True)
    assert plain["use_cpu"] is True and "ddp_backend" not in plain
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    launched = apply_machine_policy({}, machine=cpu, quiet=True)
    assert "use_cpu" not in launched and launched["ddp_backend"] == "gloo"
    gpu = apply_machine_policy({}, machine=Machine(cuda=True, cuda_bf16=True), quiet=True)
    assert "use_cpu" not in gpu and "ddp_backend" not in gpu  # GPUs: accelerate picks NCCL


def test_train_refuses_a_notebook_without_this_training(capsys):
    from mathkit.cli import main

    assert main(["train", "--notebook", "00_base_model_eval", "--output", "/nonexistent"]) == 2
    assert "python -m mathkit run 00_base_model_eval" in capsys.readouterr().err


def test_example_trace_names_the_examples_of_each_batch(tmp_path):
    """One process, the hook alone: rows of a padded batch map back to their examples."""
    from datasets import Dataset
    from transformers import TrainerControl, TrainerState, TrainingArguments

    data = Dataset.from_dict({"input_ids": [[5, 6, 7], [8, 9], [5, 6]]})
    loader = torch.utils.data.DataLoader(data)
    model = torch.nn.Linear(1, 1)
    trace = ExampleTraceCallback(tmp_path)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    state, control = TrainerState(), TrainerControl()
    model.forward = lambda input_ids=None, attention_mask=None: None
    trace.on_train_begin(args, state, control, model=model, train_dataloader=loader)
    model.train()
    model(input_ids=torch.tensor([[8, 9, 0], [5, 6, 7], [1, 2, 0]]),
          attention_mask=torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 0]]))
    state.global_step = 1
    trace.on_step_end(args, state, control)
    model.eval()
    model(input_ids=torch.tensor([[5, 6]]))  # evaluation: not recorded
    trace.on_train_end(args, state, control)
    assert read_jsonl(trace_path(tmp_path, 0)) == [{"step": 1, "rank": 0, "examples": [1, 0, None]}]


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_fsdp_shards_are_gathered_into_the_saved_model(tmp_path, kind):
    """FSDP2 on 2 CPU processes (torch's fully_shard over gloo: accelerate runs CPU processes as
    DDP, so its FSDP config cannot be launched here): each process holds half of each sharded
    weight, and the saved model (whole weights, or the LoRA adapter) gives the sharded model's
    logits after training."""
    from mathkit.models import load, save
    from tests.test_evaluation_evaluator import tiny_llama, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    base = save(tiny_llama(tokenizer), tokenizer, tmp_path / "base")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port()), str(ROOT / "tests" / "fsdp_save_worker.py"), str(tmp_path), kind, str(base)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["whole"] > 0 and run["held"] == run["whole"] and run["local"] <= run["whole"] * 0.55, \
        "each process should hold about half of the sharded weights, the two together all of them"
    saved = tmp_path / "model"
    assert (saved / ("adapter_config.json" if kind == "lora" else "config.json")).is_file()
    model, _ = load(saved, device="cpu")
    probe = torch.load(tmp_path / "probe.pt")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=probe["probe"]).logits, probe["logits"], rtol=1e-5, atol=1e-5)
        base_model, _ = load(base, device="cpu")
        assert (base_model(input_ids=probe["probe"]).logits - probe["logits"]).abs().max() > 1e-3, \
            "training changed nothing: the comparison above would not tell a trained model from the base"


def test_deepspeed_is_told_the_cpu_is_its_accelerator(monkeypatch):
    """Left to guess, DeepSpeed (imported by accelerate inside every Trainer once installed) prints
    a warning into notebook outputs; without CUDA mathkit names the CPU, and never overrides a choice."""
    from mathkit.training.distributed import name_deepspeed_accelerator

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    name_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "cpu"
    monkeypatch.setenv("DS_ACCELERATOR", "xpu")
    name_deepspeed_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "xpu"
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    name_deepspeed_accelerator()
    assert "DS_ACCELERATOR" not in os.environ
