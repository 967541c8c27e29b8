"""Each torchrun rank's device, decided from its environment (no GPUs needed to check the rule)."""

import pytest

from interp.distributed import local_device
from interp.errors import InterpError


def test_outside_torchrun_the_request_stands():
    assert local_device(None, env={}, cuda_devices=0) == "cpu"
    assert local_device(None, env={}, cuda_devices=2) == "cuda"
    assert local_device("cuda:1", env={}, cuda_devices=2) == "cuda:1"
    assert local_device("cpu", env={"LOCAL_RANK": "1"}, cuda_devices=2) == "cpu"  # gloo ranks share the CPU


@pytest.mark.parametrize("local", [0, 1, 3])
def test_each_rank_takes_its_own_gpu(local):
    env = {"RANK": str(4 + local), "WORLD_SIZE": "8", "LOCAL_RANK": str(local)}  # second machine of two
    assert local_device(None, env=env, cuda_devices=4) == f"cuda:{local}"
    assert local_device("cuda", env=env, cuda_devices=4) == f"cuda:{local}"
    assert local_device(f"cuda:{local}", env=env, cuda_devices=4) == f"cuda:{local}"


def test_two_ranks_on_one_gpu_or_too_few_gpus_are_refused():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    with pytest.raises(InterpError, match="local rank 1 must use cuda:1"):
        local_device("cuda:0", env=env, cuda_devices=2)
    with pytest.raises(InterpError, match="has 1 CUDA device"):
        local_device("cuda", env=env, cuda_devices=1)


def test_trainer_and_cli_use_the_rank_device(monkeypatch):
    """`interp sae train` under torchrun loads the model on the rank's device, and the trainer's
    DDP wrapper, store and SAE follow the model (checked on the CPU: the rule, not the GPUs)."""
    from interp.cli._common import model_of

    seen = {}
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr("interp.distributed.torch.cuda.device_count", lambda: 2)
    monkeypatch.setattr("interp.models.load_model", lambda name, device=None: seen.setdefault("device", device))

    class Args:
        model, device = None, None
    model_of(Args())
    assert seen["device"] == "cuda:1"
