"""The machine policy: one block serves a CPU, a T4 and an A100."""

import logging

import pytest

from mathkit.training.policy import GPU_OPTIMIZER, Machine, apply_machine_policy

CPU_BF16 = Machine(cuda=False, cpu_bf16=True)
CPU_PLAIN = Machine(cuda=False, cpu_bf16=False)
T4 = Machine(cuda=True, cuda_bf16=False, bitsandbytes=True)
A100 = Machine(cuda=True, cuda_bf16=True, bitsandbytes=True)


def test_cpu_runs_on_cpu_with_bf16_autocast_only_where_the_cpu_has_it(caplog):
    with caplog.at_level(logging.WARNING):
        kept = apply_machine_policy({"bf16": True}, machine=CPU_BF16)
        assert kept["bf16"] and kept["use_cpu"] and not kept["fp16"] and not kept["dataloader_pin_memory"]
        assert not caplog.records
        fp32 = apply_machine_policy({"bf16": True}, machine=CPU_PLAIN)
    assert not fp32["bf16"] and not fp32["fp16"]
    assert "no native bf16" in caplog.text and "fp32" in caplog.text


@pytest.mark.parametrize("machine, bf16", [(CPU_BF16, True), (CPU_PLAIN, False)])
def test_fp16_on_a_cpu_becomes_what_the_cpu_can_do(machine, bf16):
    values = apply_machine_policy({"fp16": True, "bf16": False}, machine=machine, quiet=True)
    assert (values["bf16"], values["fp16"]) == (bf16, False)


def test_gpu_only_settings_are_adapted_on_cpu(caplog):
    with caplog.at_level(logging.WARNING):
        values = apply_machine_policy({"optim": "paged_adamw_8bit", "auto_find_batch_size": True},
                                      machine=CPU_PLAIN)
    assert values["optim"] == "adamw_8bit" and values["auto_find_batch_size"] is False
    assert "paged_adamw_8bit" in caplog.text


def test_a_gpu_without_bf16_trains_in_fp16_and_gets_paged_adamw_unless_told_otherwise():
    values = apply_machine_policy({"bf16": True}, machine=T4, quiet=True)
    assert (values["bf16"], values["fp16"], values["optim"]) == (False, True, GPU_OPTIMIZER)
    assert "use_cpu" not in values
    chosen = apply_machine_policy({"bf16": True, "optim": "adamw_torch"}, user_keys={"optim"}, machine=A100)
    assert (chosen["bf16"], chosen["optim"]) == (True, "adamw_torch")
    no_bnb = apply_machine_policy({}, machine=Machine(cuda=True, cuda_bf16=True))
    assert "optim" not in no_bnb


def test_quiet_logs_nothing(caplog):
    with caplog.at_level(logging.INFO):
        apply_machine_policy({"bf16": True, "optim": "paged_adamw_8bit"}, machine=CPU_PLAIN, quiet=True)
    assert not caplog.records


def test_the_input_is_not_changed():
    values = {"bf16": True}
    apply_machine_policy(values, machine=CPU_PLAIN, quiet=True)
    assert values == {"bf16": True}
