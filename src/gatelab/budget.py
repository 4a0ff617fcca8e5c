"""Budgets before work: what a command's options imply, estimated and refused before any tensor
is allocated.

Every command that allocates in proportion to its options (``train``, ``compare``, ``grad
law/flow/clip``, ``bench``) first builds an :class:`Estimate`: the bytes it will hold at its peak
(the interpreter and torch, parameters with their gradients and optimiser state, the activations
autograd saves for the backward pass over ``T`` steps for every state, gate and let of the cell,
the data it reads) and the multiply-adds it will do. :func:`check` refuses an estimate past the
**memory budget** with one line that names the biggest parts and the option to shrink.

The budget is :data:`DEFAULT_FRACTION` of the memory of the machine (the smaller of the
physical memory and a cgroup limit), or of the GPU for a CUDA run; ``--memory-budget GB`` (train,
compare) or the environment variable ``GATELAB_MEMORY_BUDGET`` (every command) sets it
explicitly. Work past :data:`MAX_WORK` multiply-adds (weeks of CPU) is refused too
(``GATELAB_WORK_BUDGET`` raises it).

The per-step activation counts are empirical (peak RSS of short runs of each engine path, see
``tests/test_budget.py``, which checks estimates against measurements within a factor of two):
they are upper-bound-leaning, so a refused configuration would really have exceeded the budget.

>>> fmt_bytes(43_041_947_648)
'43.0 GB'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

GB = 10**9
ENV = "GATELAB_MEMORY_BUDGET"
WORK_ENV = "GATELAB_WORK_BUDGET"
DEFAULT_FRACTION = 0.5
MAX_BUDGET_GB = 1e6  # a petabyte: any larger number is a typo
MAX_WORK = 1e17  # multiply-adds; about a month of a CPU core's float32 arithmetic
# What a command holds before its own tensors: the interpreter, torch, sympy and gatelab loaded,
# a training loop's optimiser and evaluation set up.
RUNTIME_BYTES = 500 * 10**6
FLOAT = 4  # bytes of a float32


class OverBudget(UsageError):
    """A command's options ask for more memory or work than the budget allows."""


def fmt_bytes(n: float) -> str:
    """``n`` bytes in GB (MB under one GB), for messages."""
    return f"{n / GB:,.1f} GB" if n >= GB else f"{n / 10**6:.0f} MB"


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2, then v1), or None."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "no limit" with a huge number
            return int(text)
    return None


def machine_memory() -> int:
    """Bytes of memory this process can have: the physical memory, or the cgroup's limit when
    smaller."""
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        phys = 8 * GB  # no sysconf (not POSIX): assume a small machine
    limit = _cgroup_limit()
    return min(phys, limit) if limit else phys


def device_memory(device: str | None) -> tuple[int, str]:
    """Bytes of the memory that holds a run's tensors and what it is: the GPU's for a CUDA
    device torch can see, else the machine's."""
    if device and device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                index = int(device.partition(":")[2] or 0)
                if index < torch.cuda.device_count():
                    return torch.cuda.get_device_properties(index).total_memory, f"GPU {index}"
        except (ImportError, RuntimeError, ValueError):
            pass
    return machine_memory(), "this machine"


def _positive(text: str | float, what: str, high: float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, not {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= high):
        raise UsageError(f"{what} must be a positive finite number of at most {high:g} "
                         f"(got {text!r})")
    return value


def memory_budget(gb: float | None = None, device: str | None = None) -> tuple[int, str]:
    """The budget in bytes and where it comes from: ``gb`` (``--memory-budget``), else
    ``$GATELAB_MEMORY_BUDGET`` (GB), else :data:`DEFAULT_FRACTION` of :func:`device_memory`."""
    if gb is not None:
        return int(_positive(gb, "--memory-budget", MAX_BUDGET_GB) * GB), "--memory-budget"
    if os.environ.get(ENV):
        return int(_positive(os.environ[ENV], ENV, MAX_BUDGET_GB) * GB), ENV
    total, where = device_memory(device)
    return int(total * DEFAULT_FRACTION), f"{DEFAULT_FRACTION:.0%} of {where}'s memory"


def work_budget() -> float:
    """Multiply-adds a command may ask for: ``$GATELAB_WORK_BUDGET`` or :data:`MAX_WORK`."""
    if os.environ.get(WORK_ENV):
        return _positive(os.environ[WORK_ENV], WORK_ENV, 1e30)
    return MAX_WORK


@dataclass
class Estimate:
    """What a command will hold at its peak (``parts``: bytes by name, beside the runtime) and
    the multiply-adds it will do (``work``). ``shrink`` names the options that make it smaller."""

    what: str
    parts: dict[str, float] = field(default_factory=dict)
    work: float = 0.0
    shrink: str = ""
    device: str | None = None

    @property
    def bytes(self) -> float:
        return RUNTIME_BYTES + sum(self.parts.values())

    def describe(self) -> str:
        parts = {**self.parts, "interpreter and libraries": RUNTIME_BYTES}
        biggest = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{name} {fmt_bytes(b)}" for name, b in biggest if b >= 10**6)


def check(est: Estimate, gb: float | None = None, option: bool = False) -> Estimate:
    """``est`` when it fits the budget (:func:`memory_budget`) and :func:`work_budget`, else
    :class:`OverBudget` with one line naming what is big and how to shrink it (``option``: the
    command has ``--memory-budget``)."""
    budget, source = memory_budget(gb, est.device)
    raise_it = f"--memory-budget GB or {ENV}=GB" if option else f"{ENV}=GB"
    if est.bytes > budget:
        parts = est.describe()
        raise OverBudget(
            f"{est.what} needs about {fmt_bytes(est.bytes)} of memory"
            + (f" ({parts})" if parts else "")
            + f", over the budget of {fmt_bytes(budget)} ({source}): "
            + (f"make {est.shrink} smaller, or " if est.shrink else "")
            + f"raise the budget with {raise_it}")
    limit = work_budget()
    if est.work > limit:
        raise OverBudget(
            f"{est.what} asks for about {est.work:.2g} multiply-adds, over the work budget of "
            f"{limit:.2g} (weeks of computing): "
            + (f"make {est.shrink} smaller, or " if est.shrink else "")
            + f"raise it with {WORK_ENV}")
    return est


def bounded(values: Mapping[str, float | int | None], limits: Mapping[str, tuple[float, float]],
            whole: frozenset[str] | set[str] = frozenset()) -> None:
    """Every named option finite, of the right kind and within its ``(low, high)`` range;
    :class:`UsageError` naming the first that is not. None values are skipped (defaults)."""
    for name, value in values.items():
        if value is None:
            continue
        low, high = limits[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name} must be a number (got {value!r})")
        if name in whole and not isinstance(value, int):
            raise UsageError(f"{name} must be a whole number (got {value!r})")
        if not math.isfinite(value):
            raise UsageError(f"{name} must be a finite number (got {value!r})")
        if not low <= value <= high:
            raise UsageError(f"{name} must lie in [{_num(low)}, {_num(high)}] (got {value!r})")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e19 else f"{x:g}"


# --- training -------------------------------------------------------------------------------

# Per task: input features per step (0: token ids through an embedding), classes out, whether
# the loss reads every step, the sequence length when it is fixed, the vocabulary at most, and
# examples in an epoch (for --epochs): the loaders' own sizes.
_TASKS: dict[str, dict] = {
    "adding": {"inputs": 2, "out": 1},
    "copy": {"inputs": 10, "out": 10, "per_step": True, "extra_T": 20},
    "order": {"inputs": 6, "out": 4},
    "fmnist-row": {"inputs": 28, "out": 10, "T": 28, "n": 60000, "data": 70000 * 784 * 3},
    "fmnist-pixel": {"inputs": 1, "out": 10, "T": 784, "n": 60000, "data": 70000 * 784 * 3},
    "fmnist-permuted": {"inputs": 1, "out": 10, "T": 784, "n": 60000, "data": 70000 * 784 * 3},
    "drugs": {"inputs": 0, "out": 3, "vocab": 20000, "n": 600, "text": True},
    "tweets": {"inputs": 0, "out": 3, "vocab": 20000, "n": 34000, "text": True},
    "stdlib": {"inputs": 0, "out": 256, "per_step": True, "vocab": 256, "chars": True},
    "jsb": {"inputs": 88, "out": 88, "per_step": True, "n": 330, "data": 100 * 10**6},
}
DATA_FILE_EXPANSION = 40  # bytes held per byte of a text data file (strings, tokens, ids)


def activation_floats(cell) -> float:  # noqa: ANN001 - a gatelab Cell
    """Floats autograd keeps per sequence element, per hidden unit and layer while training
    ``cell``: each state, gate and let of a step (and its gradient's workspace), the input
    and recurrent GEMM outputs, the layer's output. A scan-parallel cell keeps the scan's
    coefficients for the whole sequence; one with several states (readouts) runs the general
    scan, which keeps many more."""
    from .engine.plan import is_scan_parallel

    signals = len(cell.states) + len(cell.gates) + len(cell.lets)
    matrices = len(cell.matrices)
    if is_scan_parallel(cell):
        return 15 * signals if len(cell.states) > 1 else 4 * signals + matrices + 2
    return 2 * signals + matrices + 2


def train_estimate(cfg, cell=None) -> Estimate:  # noqa: ANN001 - TrainConfig, Cell
    """Peak memory and work of ``gatelab train`` with ``cfg`` (a :class:`TrainConfig`) on one
    process of ``cfg.nproc``, times the processes. ``cell`` defaults to ``load_cell(cfg.cell)``.
    """
    if cell is None:
        from .cell import load_cell

        cell = load_cell(cfg.cell)
    task = _TASKS[cfg.task]
    T = task.get("T") or (cfg.max_len if task.get("text") or cfg.task == "jsb" else cfg.T)
    T = (T or 1) + task.get("extra_T", 0)
    H, L, N = cfg.hidden, cfg.layers, cfg.batch
    inputs = task["inputs"] or cfg.embed
    if cell.hidden_inputs and inputs != H:
        inputs = H  # a learned lift to the hidden size comes first
    n_out = task["out"]
    per_rank = N / cfg.nproc
    # parameters: every matrix W (H x I, I = H above the first layer) or U (H x H), vectors
    params = 0.0
    gemm = 0.0  # multiply-adds per sequence element and layer stack, forward
    for layer in range(L):
        i = inputs if layer == 0 else H
        for name in cell.params:
            shape = cell.param_shape(name, i, H)
            params += math.prod(shape)
            if len(shape) == 2:
                gemm += shape[0] * shape[1]
    params += task.get("vocab", 0) * cfg.embed + H * n_out + n_out
    params += inputs * H if cell.hidden_inputs and task["inputs"] != H else 0
    head_floats = n_out * (3 if task.get("per_step") else 0)
    training = per_rank * T * (H * L * activation_floats(cell) + head_floats + inputs)
    # evaluation (after the step's graph is freed): no graph, but every layer's GEMM outputs
    # and outputs over the whole sequence, and the logits, for a batch of at least 256
    evaluation = max(per_rank, 256) * T * (H * L * (len(cell.matrices) + 2) + 2 * n_out
                                           + inputs)
    parts = {
        "activations": max(training, evaluation) * FLOAT,
        "parameters and Adam state": params * FLOAT * 4,
        "data": _data_bytes(cfg, task, T),
    }
    parts = {k: v * cfg.nproc if k != "data" else v for k, v in parts.items()}
    parts["processes"] = (cfg.nproc - 1) * RUNTIME_BYTES
    n_train = min(task.get("n", 10**6), cfg.train_size or 10**9)
    steps = cfg.steps or math.ceil(cfg.epochs * n_train / N)
    work = 3 * steps * N * T * (gemm + H * n_out)  # forward + twice that backward
    return Estimate(f"train {cfg.task} ({cell.name}, hidden {H}, layers {L}, batch {N}, "
                    f"T {T})", parts, work, "--batch, --hidden, --layers or -T",
                    device=cfg.device)


def _data_bytes(cfg, task: dict, T: int) -> float:  # noqa: ANN001 - TrainConfig
    """What the task's data takes in memory: a generated task's evaluation set, a file's
    contents as the loader holds them (from the file's size when ``--data`` names one)."""
    if task.get("chars"):  # the loader stops at train_size characters
        return 30 * (cfg.train_size or 10**6)
    if task.get("text"):
        size = _size(cfg.data_path)
        return DATA_FILE_EXPANSION * (size if size is not None else 8 * 10**6)
    if "data" in task:
        return task["data"]
    n_eval = cfg.eval_size or 500
    return (n_eval + cfg.batch) * T * task["inputs"] * 3 * FLOAT  # ids, one-hot, floats


def _size(path: str | None) -> int | None:
    """Bytes of a regular file (of the first thousand files of a folder), None when not
    found."""
    if not path:
        return None
    p = Path(path)
    try:
        if p.is_dir():
            files = [f for _, f in zip(range(1000), p.iterdir(), strict=False)]
            return sum(f.stat().st_size for f in files if f.is_file())
        return p.stat().st_size if p.is_file() else None
    except OSError:
        return None


# --- the gradient lab (gatelab grad law / flow / clip) -----------------------------------------

SEED = (0, 2**63 - 1)
LAW_LIMITS = {"--steps": (2, 100_000), "--hidden": (1, 4096), "--seed": SEED,
              "--sigma-max": (1e-12, 1e6), "--sigma-min": (0, 1e6)}
FLOW_LIMITS = {"--steps": (1, 100_000), "--batch": (1, 65536), "--hidden": (1, 4096),
               "--seed": SEED}
CLIP_LIMITS = {"--steps": (1, 10**6), "--seq-len": (2, 100_000), "--hidden": (1, 4096),
               "--batch": (1, 65536), "--seed": SEED, "--sigma-max": (1e-12, 1e6),
               "--lr": (1e-12, 1e6), "--max-norm": (1e-12, 1e12), "--clip-value": (1e-12, 1e12)}
_WHOLE = frozenset({"--steps", "--hidden", "--batch", "--seq-len", "--seed"})


def reference_floats(cell) -> float:  # noqa: ANN001 - a gatelab Cell (None: an LSTM's size)
    """Floats kept per sequence element and hidden unit when the gradient lab replays ``cell``
    step by step through its equations with autograd (every signal, its gradient, the GEMMs)."""
    signals, matrices = (7, 8) if cell is None else (
        len(cell.states) + len(cell.gates) + len(cell.lets), len(cell.matrices))
    return 4 * signals + matrices + 6


def check_law(*, steps: int, hidden: int, seed: int, sigma_max: float,
              sigma_min: float | None = None, gb: float | None = None) -> Estimate:
    """``grad law``'s options bounded, and its Jacobian ``(T + 1) x H x H`` (float64, taken
    with one vectorised reverse pass over ``(T + 1) H`` outputs: ``(T + 1)² H²`` numbers)
    within the budget."""
    bounded({"--steps": steps, "--hidden": hidden, "--seed": seed, "--sigma-max": sigma_max,
             "--sigma-min": sigma_min}, LAW_LIMITS, _WHOLE)
    rows = (steps + 1) * hidden
    est = Estimate(f"grad law (--steps {steps}, --hidden {hidden})",
                   {"Jacobian": 12.0 * rows * rows}, rows * steps * hidden * hidden,
                   "--steps or --hidden")
    return check(est, gb)


def check_flow(cell, *, steps: int, batch: int, hidden: int, seed: int,  # noqa: ANN001
               gb: float | None = None) -> Estimate:
    """``grad flow``'s options bounded and its replay (``batch x steps x hidden`` per signal of
    ``cell``; None: a trained run's cell, counted as an LSTM) within the budget."""
    bounded({"--steps": steps, "--batch": batch, "--hidden": hidden, "--seed": seed},
            FLOW_LIMITS, _WHOLE)
    n = batch * steps * hidden
    signals = 1 if cell is None else len(cell.states)
    est = Estimate(f"grad flow (--steps {steps}, --batch {batch}, --hidden {hidden})",
                   {"activations": n * reference_floats(cell) * FLOAT},
                   3 * n * hidden * (8 if cell is None else len(cell.matrices)) * (1 + signals),
                   "--steps, --batch or --hidden")
    return check(est, gb)


def check_clip(*, steps: int, seq_len: int, hidden: int, batch: int, seed: int,
               sigma_max: float, lr: float, max_norm: float, clip_value: float,
               gb: float | None = None) -> Estimate:
    """``grad clip``'s options bounded, and one training step of its RNN (``batch x seq_len x
    hidden``, replayed through the cell) within the budget; three runs of ``steps`` steps."""
    bounded({"--steps": steps, "--seq-len": seq_len, "--hidden": hidden, "--batch": batch,
             "--seed": seed, "--sigma-max": sigma_max, "--lr": lr, "--max-norm": max_norm,
             "--clip-value": clip_value}, CLIP_LIMITS, _WHOLE)
    n = batch * seq_len * hidden
    est = Estimate(f"grad clip (--seq-len {seq_len}, --batch {batch}, --hidden {hidden})",
                   {"activations": n * 12 * FLOAT}, 3 * steps * 3 * n * (hidden + 2),
                   "--seq-len, --batch, --hidden or --steps")
    return check(est, gb)


# --- gatelab bench ----------------------------------------------------------------------------

BENCH_LIMITS = {"--T": (1, 100_000), "--N": (1, 65536), "--H": (1, 4096),
                "--repeats": (1, 1000), "--scan-T": (0, 10**6), "--scan-H": (1, 4096),
                "--scan-N": (1, 65536), "--small-T": (0, 100_000), "--small-N": (1, 65536),
                "--small-H": (1, 4096), "--small-layers": (1, 16), "--threads": (0, 1024)}
BENCH_CASES = 16  # timed workloads per round, each holding its own input and weights


# PLR0913: keyword-only: one bound per option of `gatelab bench`
def check_bench(*, T: int, N: int, H: int, repeats: int, scan_T: int, scan_H: int,  # noqa: PLR0913
                scan_N: int, small_T: int, small_N: int, small_H: int, small_layers: int,
                threads: list[int]) -> Estimate:
    """``bench``'s sizes bounded, and its largest workload (an LSTM's forward + backward over
    ``N x T x H``, beside every case's input; the minGRU scan) within the budget."""
    sizes = {"--T": T, "--N": N, "--H": H, "--repeats": repeats, "--scan-T": scan_T,
             "--scan-H": scan_H, "--scan-N": scan_N, "--small-T": small_T,
             "--small-N": small_N, "--small-H": small_H, "--small-layers": small_layers}
    bounded(sizes, BENCH_LIMITS, frozenset(BENCH_LIMITS))
    for t in threads:
        bounded({"--threads": t}, BENCH_LIMITS, frozenset(BENCH_LIMITS))
    main = N * T * H * (24 + BENCH_CASES) * FLOAT
    scan = scan_N * scan_T * scan_H * 16 * FLOAT
    small = small_N * small_T * small_H * small_layers * 24 * FLOAT
    work = len(threads) * repeats * BENCH_CASES * 3 * (
        N * T * 8 * H * H + scan_N * scan_T * 2 * scan_H * scan_H
        + small_N * small_T * 8 * small_H * small_H * small_layers)
    est = Estimate(f"bench (--T {T}, --N {N}, --H {H}, --scan-T {scan_T})",
                   {"layers": main + small, "scan": scan}, work,
                   "--T, --N, --H, --scan-T or --repeats")
    return check(est)
