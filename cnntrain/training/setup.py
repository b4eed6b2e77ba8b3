"""Everything a run needs before its first step, built in one order from a validated config.

Training, `cnntrain-eval` and the throughput benchmark all start from `setup`, so they see the same data,
normalisation, model, precision, loss, optimizer and schedule. The order below is part of the result:
the seed is set again just before the model is built, so its initial weights do not depend on the data
(nor on the rank, in a data-parallel run: every rank builds the same weights, and DDP checks they agree).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from cnntrain.config.schema import TrainerConfig, section
from cnntrain.data.augment import check_augment
from cnntrain.data.batches import num_batches
from cnntrain.data.description import DataDescription
from cnntrain.data.loading import DataBundle, load_data
from cnntrain.device import resolve_device
from cnntrain.models.architectures import expected_stats, saved_weights
from cnntrain.models.builder import LayerRow, build_model, check_outputs
from cnntrain.training import distributed
from cnntrain.training.accel import Accel
from cnntrain.training.distributed import SINGLE, Ranks
from cnntrain.training.finetune import freeze_for_epoch
from cnntrain.training.optim import LRSchedule, build_optimizer, build_schedule, parameter_groups
from cnntrain.training.stepping import Stepping, stepping_from
from cnntrain.training.tasks import task_for


@dataclass
class RunSetup:
    """The pieces of a run, ready to fit or evaluate."""

    device: torch.device
    data: DataBundle
    model: nn.Module  # on the device, in the chosen layout (compiled when asked)
    rows: list[LayerRow]  # the model summary
    accel: Accel
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    trainer: TrainerConfig  # the config's trainer section, typed: what the loop and the test pass run with
    ranks: Ranks = SINGLE
    train_model: nn.Module | None = None  # the module that trains: DDP over `model` in a data-parallel run
    stepping: Stepping = field(default_factory=Stepping)  # accumulation, clipping, the weight average
    task: Any = None  # what the run learns (cnntrain.training.tasks): one class or a set of labels per image

    def __post_init__(self) -> None:
        if self.train_model is None:
            self.train_model = self.model
        if self.task is None:
            self.task = task_for(self.data.description.task)


def setup(
    cfg: DictConfig,
    description: DataDescription | None = None,
    weights: dict[str, Any] | None = None,
    ranks: Ranks = SINGLE,
) -> RunSetup:
    """Seed and configure torch, load the data onto the device, build the model (with `weights`, a state dict,
    when given: then no pretrained weights are read), and the loss, optimizer and schedule. Pretrained weights
    that bring their mean/std replace the data's statistics, so every later normalisation uses them.
    `description` is what the preflight learned about the
    data (so the files are checked and a folder scanned once); the data's facts are written into cfg.dataset.
    One rank of several joins its process group here, on the GPU of its local rank where there are GPUs.
    """
    trainer = section(cfg.trainer, TrainerConfig)
    configure_torch(cfg.seed, cfg.deterministic, cfg.threads, trainer.compile, ranks)
    device = distributed.rank_device(resolve_device(cfg.device), ranks)
    ranks = distributed.start(ranks, device)
    data = load_data(cfg.dataset, seed=cfg.seed, device=device, description=description)
    data.description.fill(cfg.dataset)
    torch.manual_seed(cfg.seed)
    with saved_weights() if weights is not None else contextlib.nullcontext():
        model, rows = build_model(cfg.model.layers, data.input_shape, model_name=cfg.model.name)
    check_outputs(rows, data.description.num_classes, cfg.model.name)
    check_augment(cfg.dataset.augment, data.input_shape)
    stats = expected_stats(model, data.input_shape[0])
    if stats is not None:
        data = data.with_stats(*stats)
        data.description.fill(cfg.dataset)
    if weights is not None:
        model.load_state_dict(weights)
    freeze_for_epoch(model, trainer.finetune, 1)
    accel = Accel(device, trainer.precision, trainer.channels_last, trainer.compile)
    model = accel.prepare_model(model)
    train_model = distributed.wrap(model, ranks, device, sync_batchnorm=trainer.sync_batchnorm)
    optimizer = build_optimizer(parameter_groups(model, trainer, cfg.optimizer), cfg.optimizer)
    stepping = stepping_from(trainer, model)
    steps = stepping.steps_per_epoch(num_batches(len(data.train), trainer.batch_size, False, ranks.world))
    schedule = build_schedule(optimizer, cfg.scheduler, trainer.epochs, steps)
    task = task_for(data.description.task, cfg, data.description.num_classes)
    loss_fn = task.loss(cfg, data, device)
    return RunSetup(
        device, data, model, rows, accel, loss_fn, optimizer, schedule, trainer, ranks, train_model, stepping, task
    )


def configure_torch(seed: int, deterministic: bool, threads: int | None, compiled: bool, ranks: Ranks = SINGLE) -> None:
    """Threads, seeds and determinism (the config's `seed`, `deterministic`, `threads`; `compiled`:
    trainer.compile), before any tensor is made.

    Ranks on one machine share its cores: each takes cores / ranks-per-machine threads unless `threads`
    says otherwise. Deterministic mode uses warn_only: an op with no deterministic kernel (a few CUDA ones)
    warns instead of stopping a run; summary.json records the flags in force.
    """
    threads = threads if threads is not None else distributed.threads_per_rank(ranks)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for repeatable matmuls
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    set_deterministic(deterministic, compiled=compiled)


def set_deterministic(mode: bool, *, compiled: bool) -> None:
    """torch.use_deterministic_algorithms(mode, warn_only=True), without its cost when nothing is compiled.

    The public call imports all of torch._inductor (about 2 s on a small CPU) only to set inductor's own
    flag; without torch.compile the flag of the kernels themselves is the whole effect.
    """
    if compiled or "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=True)
