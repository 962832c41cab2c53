"""Data-parallel training: one process per device, every rank a full model replica, gradients all-reduced.

How a run becomes N processes (`hardware.num_processes > 1`):

* launched by hand (`lora-lab hardware=cpu_ddp ...`): `run_job` calls `prepare`, which sees no distributed
  environment, dumps the resolved config to `<run_dir>/.launch/config.yaml` and relaunches
  `python -m lora_lab.rank_entry <yaml> <run_dir>` under `torch.distributed.run` (torchrun). The
  parent waits and returns rank 0's `metrics.json`.
* already inside a launch (`RANK`/`WORLD_SIZE` from torchrun or `accelerate launch`): initialise the process
  group (gloo on CPU, nccl on GPU) and run as that rank.
* inside a SLURM job with several tasks (`SLURM_NTASKS > 1`, `hardware.slurm.tasks_per_node` = GPUs per node):
  the tasks ARE the ranks — take rank/world size from SLURM (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`)
  and initialise the group directly, never relaunch.

Every rank runs the same recipe (so collectives line up). Only rank 0 evaluates, logs and writes into the run
dir; ranks > 0 get `eval.before/after=false`, `logger=none` and a scratch run dir under `.launch/rank<k>`.
The training loop takes each rank's slice of every step's micro-batches and normalises the loss by the
GLOBAL answer-token count (see `global_sum`), so N ranks x grad_accum equals one process with N x grad_accum.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from lora_lab.config.errors import Diverged, Interrupted
from lora_lab.utils.device import cuda_available, wants_cuda
from lora_lab.utils.io import read_json

LAUNCH_DIR = ".launch"
# Set for the ranks of a relaunch: the parent process holds the run dir's lock (lora_lab/jobs/run_dir.py).
CLAIMED_ENV = "LORA_LAB_CLAIMED_RUN_DIR"


@dataclass
class Launch:
    """What `run_job` should do: return `metrics` (the parent of a relaunch), or run `cfg` in `run_dir`."""

    cfg: DictConfig
    run_dir: Path
    metrics: dict[str, Any] | None = None
    rank: int = 0
    world_size: int = 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def launched_rank() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) of an existing multi-process launch, or None."""
    if _env_int("WORLD_SIZE") is not None and _env_int("RANK") is not None:
        return _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK") or 0
    if (_env_int("SLURM_NTASKS") or 1) > 1 and _env_int("SLURM_PROCID") is not None:
        return _env_int("SLURM_PROCID"), _env_int("SLURM_NTASKS"), _env_int("SLURM_LOCALID") or 0
    return None


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend_for(hardware: DictConfig) -> str:
    backend = hardware.get("distributed_backend", "auto")
    if backend and backend != "auto":
        return str(backend)
    return "nccl" if wants_cuda(hardware.device) and cuda_available() else "gloo"  # device=cuda without CUDA: gloo


def _slurm_rendezvous() -> None:
    """SLURM sets ranks but not the rendezvous address: first node of the job, a port from the job id."""
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST") or "127.0.0.1"
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                 check=True, timeout=30)
            os.environ["MASTER_ADDR"] = out.stdout.split()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            os.environ["MASTER_ADDR"] = nodes.split(",")[0].split("[")[0] + (
                nodes.split("[")[1].split("-")[0].split(",")[0] if "[" in nodes.split(",")[0] else "")
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))


def init_process_group(hardware: DictConfig, rank: int, world_size: int, local_rank: int) -> None:
    if dist.is_initialized():
        return
    backend = backend_for(hardware)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # `torch.device("cuda")` then means this rank's GPU
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        _slurm_rendezvous()
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)


def prepare(raw_cfg: DictConfig, run_dir: Path) -> Launch:
    """Decide how this process takes part in the run (see the module docstring)."""
    hardware = raw_cfg.get("hardware")
    wanted = int(hardware.get("num_processes", 1) or 1) if hardware is not None else 1
    launched = launched_rank()
    if launched is None or launched[1] <= 1:
        if wanted <= 1:
            return Launch(raw_cfg, run_dir)
        return Launch(raw_cfg, run_dir, metrics=relaunch(raw_cfg, run_dir, wanted))
    rank, world_size, local_rank = launched
    init_process_group(hardware, rank, world_size, local_rank)
    if rank == 0:
        return Launch(raw_cfg, run_dir, rank=rank, world_size=world_size)
    cfg = OmegaConf.create(OmegaConf.to_container(raw_cfg, resolve=True))
    cfg.eval.before, cfg.eval.after, cfg.eval.save_predictions = False, False, False
    cfg.logger = {"name": "none"}
    cfg.print_summary = False
    scratch = Path(run_dir) / LAUNCH_DIR / f"rank{rank}"
    shutil.rmtree(scratch, ignore_errors=True)  # a stale 'ok' here must never make this rank skip its part
    scratch.mkdir(parents=True, exist_ok=True)
    return Launch(cfg, scratch, rank=rank, world_size=world_size)


def main_run_dir(run_dir: Path) -> Path:
    """The run dir rank 0 writes: ranks > 0 work in `<run dir>/.launch/rank<k>` and read checkpoints from here."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent if run_dir.parent.name == LAUNCH_DIR else run_dir


def relaunch(raw_cfg: DictConfig, run_dir: Path, nproc: int) -> dict[str, Any]:
    """Run this job as `nproc` processes under torchrun and return rank 0's metrics."""
    run_dir = Path(run_dir)
    launch_dir = run_dir / LAUNCH_DIR
    launch_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = launch_dir / "config.yaml"
    OmegaConf.save(OmegaConf.to_container(raw_cfg, resolve=True), cfg_path)
    env = dict(os.environ)
    if backend_for(raw_cfg.hardware) == "gloo" and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))  # share the cores, do not oversubscribe
    env[CLAIMED_ENV] = str(run_dir.resolve())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "lora_lab.rank_entry", str(cfg_path), str(run_dir)]
    process = subprocess.Popen(cmd, env=env)
    try:
        returncode = process.wait()
    except Interrupted as stop:  # pass it on; the ranks stop together at a step boundary and rank 0 records it
        process.send_signal(stop.signum)
        process.wait()
        recorded = read_json(run_dir / "metrics.json") or {}
        if recorded.get("status") == "interrupted":
            raise Interrupted(stop.signum, recorded.get("error"), step=recorded.get("step"),
                              **{k: recorded[k] for k in ("checkpoint", "checkpoint_step") if k in recorded}) from None
        raise
    metrics = read_json(run_dir / "metrics.json") or {}
    if metrics.get("error_type") == "Diverged":  # rank 0 recorded it; the parent reports the same outcome
        raise Diverged(metrics.get("error") or "diverged", step=metrics.get("step"))
    if returncode != 0 or metrics.get("status") != "ok":
        raise RuntimeError(f"distributed run failed (exit {returncode}); see {run_dir}/metrics.json "
                           f"and {run_dir}/error.txt")
    for k in range(1, nproc):
        shutil.rmtree(launch_dir / f"rank{k}", ignore_errors=True)  # ranks > 0 only ran the collectives
    return metrics


# ----- used by the training loop -----

def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP over the trainable parameters (frozen ones carry no gradient hooks). It broadcasts rank 0's
    weights at construction, so replicas start equal even when an adapter's init was not seeded."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP (per-parameter sharding, `fully_shard`): each decoder layer is one unit, gathered for its forward
    and backward and freed after, then the root. Frozen and adapter weights are sharded alike, so a rank holds
    1/N of the model between layers; gradients are reduce-scattered (averaged, as DDP does)."""
    from torch.distributed.fsdp import fully_shard

    layer_classes = next((set(m._no_split_modules) for m in model.modules() if getattr(m, "_no_split_modules", None)),
                         set())
    layers = [m for m in model.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise RuntimeError(f"{type(model).__name__}: no decoder layers found to shard (_no_split_modules)")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Gather the trainable weights of a sharded model (a collective: every rank calls it); rank 0 gets
    full CPU tensors, the other ranks an empty dict."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_model_state_dict(model, options=options)


def global_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum numbers over ranks (answer-token counts, losses, tokens seen)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    comm_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=comm_device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def replica_max_abs_diff(params: list[torch.nn.Parameter]) -> float:
    """Largest |difference| of any trainable weight between ranks (0 when replicas agree)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    worst = 0.0
    on_gpu = dist.get_backend() == "nccl"
    for p in params:
        local = p.detach().float() if on_gpu else p.detach().float().cpu()
        high, low = local.clone(), local.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        worst = max(worst, float((high - low).abs().max()) if high.numel() else 0.0)
    return worst

