"""Multi-process training with ``torch.distributed`` (DDP; gloo on CPU, NCCL on CUDA).

Every rank builds the same model from the same seed, reads its share (``rank::world``) of the
same global batch, and DDP averages the gradients, so ``--nproc 2`` with ``--batch 64`` trains on
the same 64 examples per step as one process. Rank 0 evaluates, writes the run folder and shows
the progress bar.

Nothing listens beyond loopback: the ranks meet through a ``FileStore`` in a private temporary
folder (torch's ``TCPStore`` would listen, unauthenticated, on every interface whatever host it
is given), and gloo's (NCCL's) own sockets are put on the loopback interface
(``GLOO_SOCKET_IFNAME``/``NCCL_SOCKET_IFNAME``, unless the user set them).
"""

from __future__ import annotations

import builtins
import os
import shutil
import socket
import sys
import tempfile
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import GatelabError, UsageError
from .config import TrainConfig


def loopback_interface() -> str:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS)."""
    names = [name for _, name in socket.if_nameindex()]
    for name in ("lo", "lo0", *names):
        if name in names and name.startswith("lo"):
            return name
    raise UsageError("--nproc > 1 needs a loopback network interface (lo), and this machine "
                     "shows none")


def init_group(backend: str, store_file: str, rank: int, world: int) -> None:
    """Join the process group through the store file, with every socket on loopback."""
    lo = loopback_interface()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", lo)
    os.environ.setdefault("NCCL_SOCKET_IFNAME", lo)
    dist.init_process_group(backend, store=dist.FileStore(store_file, world), rank=rank,
                            world_size=world)


def _worker(rank: int, world: int, store_file: str, config: TrainConfig, progress: bool,
            resume: bool, errors) -> None:  # noqa: ANN001 - a multiprocessing queue
    from .trainer import train_worker

    backend = "nccl" if config.device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        config.device = f"cuda:{rank}"
    torch.set_num_threads(config.threads)
    init_group(backend, store_file, rank, world)
    try:
        train_worker(config, rank, world, progress=progress, resume=resume)
        # Leave together: no rank tears gloo down while the other
        # still talks to it. With the os._exit below: 0 aborts at exit in 100 runs.
        dist.barrier()
    except Exception as e:  # noqa: BLE001 - handed to the parent, which re-raises it
        # A GatelabError's exit status goes with it (None: a bug, re-raised with its traceback).
        code = e.exit_code if isinstance(e, GatelabError) else None
        errors.put((rank, type(e).__name__, str(e), traceback.format_exc(), code))
    finally:
        dist.destroy_process_group()
    # Skip interpreter finalisation: gloo's C++ threads can still hold tensors then, and tearing
    # them down without the interpreter aborted a worker at exit about once in 40 runs (seen,
    # with and without the barrier above). Everything this worker owes is written by now: the
    # run folder by its atomic writes, errors through the queue (a synchronous pipe write).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def train_ddp(config: TrainConfig, progress: bool = True, resume: bool = False) -> Path:
    """Train with ``config.nproc`` processes on this machine; returns the run folder."""
    from .trainer import TrainError, _prepare

    world = config.nproc
    if config.device.startswith("cuda") and torch.cuda.device_count() < world:
        raise UsageError(f"--nproc {world} on CUDA needs {world} GPUs, "
                         f"found {torch.cuda.device_count()}")
    # Resolve the folder (and refuse to overwrite) before starting any process.
    config, out, _, _ = _prepare(config, resume)
    loopback_interface()  # refused here, before any process starts, on a machine without one
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    meeting = tempfile.mkdtemp(prefix="gatelab-ddp-")  # mode 0700: only this user's ranks
    try:
        mp.start_processes(_worker, args=(world, os.path.join(meeting, "store"), config,
                                          progress, resume, errors),
                           nprocs=world, join=True, start_method="spawn")
    finally:
        shutil.rmtree(meeting, ignore_errors=True)
    if not errors.empty():
        rank, kind, msg, tb, code = errors.get()
        if kind == "DataUnavailable":
            from ..data import DataUnavailable

            raise DataUnavailable(msg)
        if kind in ("TrainingDiverged", "RunExists", "ConfigMismatch", "TrainError"):
            err = TrainError(msg)
            if kind == "TrainingDiverged":
                err.exit_code = 1  # as TrainingDiverged's: the run failed, not the command
            raise err
        if code is not None:  # any other user error: the same message and exit status
            err = UsageError(msg)
            err.exit_code = code
            raise err
        builtin = getattr(builtins, kind, None)
        if isinstance(builtin, type) and issubclass(builtin, OSError):  # a file or disk problem
            raise builtin(msg)
        raise RuntimeError(f"rank {rank} failed: {kind}: {msg}\n{tb}")
    return out
