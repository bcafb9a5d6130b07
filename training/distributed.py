"""Several processes train one model: which one writes the files a user reads, and who waits for it.

Under ``torchrun`` or ``accelerate launch`` every process runs the same ``train(cfg)``. The
``Trainer`` shards the batches, averages the gradients and gathers predictions, so each process
ends with the same model and the same whole-split metrics; only the main process (global rank 0)
then writes the model into the staging folder (:mod:`training.final_dir`), and every process
waits at a barrier until it is complete, so none exits (and no launcher tears the group down)
while a collective could still be needed. The main process then moves the model in, writes the
card and prints the summary line on its own: those steps need no other process.

Example:
    >>> is_main_process(), world_size()  # a plain single-process run
    (True, 1)
    >>> with main_process_writes() as writer:
    ...     writer
    True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.distributed as dist
from transformers import TrainerCallback


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_size() -> int:
    """How many processes train together: the process group's size, else ``WORLD_SIZE`` (1 when unset).

    Example:
        >>> world_size()
        1
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's global rank (0 in a single-process run).

    Example:
        >>> rank()
        0
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def is_main_process() -> bool:
    """Whether this process writes what a user reads: global rank 0, the one process of a plain run.

    One writer across machines too: the output directory is meant to be on a shared filesystem.

    Example:
        >>> is_main_process()
        True
    """
    return rank() == 0


def several_cpu_processes() -> bool:
    """Whether several processes train without a GPU (gloo on the CPU).

    The trainer must be told (``use_cpu``): otherwise, finding no GPU under ``torchrun``, it runs
    each process as a separate single-process training on all the data, each writing checkpoints.

    Example:
        >>> several_cpu_processes()  # one process
        False
    """
    return world_size() > 1 and not torch.accelerator.is_available()


def barrier() -> None:
    """Wait until every process gets here; nothing to wait for in a single-process run.

    Example:
        >>> barrier()  # returns at once without a process group
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])  # NCCL waits on this process's own GPU
    else:
        dist.barrier()


def gathered(value: object) -> list:
    """``value`` from every process, by rank (``[value]`` without a process group).

    Example:
        >>> gathered({"data.train_file": None})
        [{'data.train_file': None}]
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


@contextmanager
def main_process_writes() -> Iterator[bool]:
    """Run the block's writes on the main process only, then hold every process until they are done.

    Yields whether this process is the writer. The barrier is skipped when the block raises: the
    launcher then stops the other processes, which a barrier would only keep waiting.

    Example:
        >>> import tempfile, pathlib
        >>> report = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
        >>> with main_process_writes() as writer:
        ...     if writer:
        ...         _ = report.write_text("{}")
        >>> report.read_text()
        '{}'
    """
    yield is_main_process()
    barrier()


def loss_is_batch_mean(model: torch.nn.Module) -> torch.nn.Module:
    """Tell ``Trainer`` that ``model``'s loss is the mean over its own batch, as BERT's and mT5's are.

    Their ``forward`` takes ``**kwargs``, so ``Trainer`` assumes the loss was divided by the token
    count of the whole step (``num_items_in_batch``) and multiplies it by the number of processes,
    and skips dividing it by ``gradient_accumulation_steps``: 2 processes or 2 accumulation steps
    reported (and stepped on) twice the loss. A ``compute_loss_func`` is still scaled as before.

    Example:
        >>> loss_is_batch_mean(torch.nn.Linear(2, 2)).accepts_loss_kwargs
        False
    """
    model.accepts_loss_kwargs = False
    return model


class LogLastStep(TrainerCallback):
    """Log the training loss at the last step too, so the run's mean ``train_loss`` covers every process.

    ``Trainer`` gathers the loss from all processes at each log, but adds the loss since the last
    log to ``train_loss`` from the main process alone, where DDP's loss scaling leaves it
    multiplied by the number of processes (a 2-process summarizer reported twice its loss).

    Example:
        >>> from transformers import TrainerControl, TrainerState
        >>> control = TrainerControl()
        >>> LogLastStep().on_step_end(None, TrainerState(global_step=9, max_steps=9), control).should_log
        True
    """

    def on_step_end(self, args, state, control, **kwargs):
        control.should_log = control.should_log or state.global_step >= state.max_steps
        return control


def quiet_replicas() -> None:
    """On every process but the main one, show warnings only and no progress bars (they would repeat).

    Example:
        >>> import datasets
        >>> quiet_replicas()  # the main process keeps its progress bars
        >>> datasets.is_progress_bar_enabled()
        True
    """
    if is_main_process():
        return
    import datasets

    datasets.disable_progress_bars()
    logging.getLogger().setLevel(logging.WARNING)


def one_of_several_warning(environ: Mapping[str, str] = os.environ) -> str | None:
    """A warning when ``accelerate launch`` was asked for several processes but started only this one.

    ``accelerate launch --cpu --num_processes 2`` (and a ``MULTI_CPU`` config without an MPI host
    file) starts ONE process: its simple launcher sets ``MASTER_ADDR`` because more were asked
    for, but no ``WORLD_SIZE``, which every launcher that starts several processes sets.

    Example:
        >>> one_of_several_warning({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"})[:40]
        'accelerate launch started ONE process, t'
        >>> one_of_several_warning({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "h", "WORLD_SIZE": "2"}) is None
        True
    """
    if "ACCELERATE_USE_CPU" not in environ or "MASTER_ADDR" not in environ or "WORLD_SIZE" in environ:
        return None
    return (
        "accelerate launch started ONE process, though more were asked for (--cpu runs a single process); "
        "for N processes: torchrun --nproc_per_node N -m training CONFIG, "
        "or accelerate launch --multi_gpu --num_processes N -m training CONFIG"
    )
