"""``gatelab bench --peer jax``: gatelab's layers against the same cells in JAX
(:mod:`gatelab.engine.jax_peer`), forward + backward, at the sizes of issue 25, with the
protocol of :func:`gatelab.engine.bench.time_cases` (one warm-up, interleaved rounds, medians).

Each comparison is of the same function: the JAX peer gets the gatelab layer's parameters (copied
from its tensors) and must give its outputs and gradients (float32 tolerance) before anything is
timed. JAX fixes its thread pool when it starts, so each thread count runs in a fresh process:
pinned to that many CPUs, ``torch.set_num_threads(n)``, and for one thread
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``.

Timing (:func:`time_batched`): as :func:`gatelab.engine.bench.time_cases` (one warm-up,
interleaved rounds, medians), except that each sample is the mean of ``k`` back-to-back calls,
``k`` chosen so that a sample lasts at least ``MIN_SAMPLE_S``: on a shared machine a single
sub-millisecond call that follows a long one is often preempted for a whole scheduler slice,
which would charge the fastest case most; over a longer sample every case loses the same share.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from .bench import Case
from .layout import EngineError

PEER_SIZES = ((32, 8, 32), (35, 20, 64), (100, 64, 256))  # (T, N, I = H)
PEER_CELLS = ("mgu", "lstm-peephole")
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
OUT_ATOL = 1e-4  # float32 outputs in [-1, 1] after up to 100 steps
GRAD_RTOL = 1e-3  # of the largest gradient entry
MIN_SAMPLE_S = 0.02


def jax_available() -> bool:
    """Whether JAX is installed (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("jax") is not None


def cell_cases(name: str, T: int, N: int, H: int,
               backends: tuple[str, ...] = ("auto",)) -> list[Case]:
    """gatelab's layer (one case per backend, its route in the label) and its JAX peer with the
    same parameters, each checked equal first: raises EngineError when they disagree."""
    import jax.numpy as jnp

    from ..cell import load_cell
    from ..nn import RNN
    from .jax_peer import JaxPeer

    cell = load_cell(name)
    torch.manual_seed(0)
    first, x = RNN(cell, H, H), torch.randn(T, N, H)
    P = {k: jnp.asarray(v.detach().numpy()) for k, v in first.cell_params().items()}
    X = jnp.asarray(x.numpy())
    peer = JaxPeer(cell, H)
    Q = peer.pack(P)
    cases = []
    for backend in backends:
        model = RNN(cell, H, H, backend=backend)
        model.load_state_dict(first.state_dict())  # the same numbers in every case
        check_same_function(model, x, peer, P, X)

        def gatelab_run(model=model) -> None:
            model.zero_grad(set_to_none=True)
            model(x)[0].sum().backward()

        label = model.path if backend == "auto" else f"{backend}: {model.path}"
        cases.append(Case(f"{name}: gatelab ({label})", lambda run=gatelab_run: run))

    def jax_run() -> None:
        loss, grads = peer.loss_and_grads(Q, X)
        loss.block_until_ready()
        for g in grads.values():
            g.block_until_ready()

    return [*cases, Case(f"{name}: JAX", lambda: jax_run)]


def check_same_function(model, x: torch.Tensor, peer, P: dict, X) -> None:
    """The JAX peer's outputs and gradients are the layer's (float32 tolerance), or raise."""
    out = model(x)[0]
    got, _ = peer.forward(peer.pack(P), X)
    err = float(np.abs(np.asarray(got) - out.detach().numpy()).max())
    packed, named = model.packed_params(), model.cell_params()
    want = torch.autograd.grad(out.sum(), list(packed.values()))
    g = peer.grads(P, X)
    # the peer's gradients under the cell's names, taken back to the packed tensors
    mine = torch.autograd.grad(list(named.values()), list(packed.values()),
                               grad_outputs=[torch.from_numpy(np.array(g[k])) for k in named],
                               allow_unused=True)
    scale = max(float(w.abs().max()) for w in want)
    gerr = max(float((w - m).abs().max()) for w, m in zip(want, mine, strict=True)
               if m is not None)
    if not err <= OUT_ATOL or not gerr <= GRAD_RTOL * scale:
        raise EngineError(f"the JAX peer of {model.cell.name!r} is not gatelab's function: "
                          f"outputs differ by {err:.2e}, gradients by {gerr:.2e} "
                          f"(largest {scale:.2e}); nothing timed")


def time_batched(cases: list[Case], repeats: int,
                 progress: Callable[[str], None] = lambda s: None) -> dict[str, list[float]]:
    """Seconds per call of each case: warm-up, then ``repeats`` interleaved rounds, each sample
    the mean of ``k`` calls (see the module docstring)."""
    runs = {}
    for c in cases:
        progress(f"warm-up {c.label}")
        run = c.build()
        run()
        fastest = min(_seconds(run, 1) for _ in range(3))
        runs[c.label] = (run, max(1, int(MIN_SAMPLE_S / max(fastest, 1e-6)) + 1))
    times: dict[str, list[float]] = {label: [] for label in runs}
    for r in range(repeats):
        for label, (run, k) in runs.items():
            progress(f"round {r + 1}/{repeats}: {label}")
            times[label].append(_seconds(run, k))
    return times


def _seconds(run: Callable[[], None], k: int) -> float:
    t0 = time.perf_counter()
    for _ in range(k):
        run()
    return (time.perf_counter() - t0) / k


def run_peer(sizes=PEER_SIZES, cells=PEER_CELLS, repeats: int = 7,
             progress: Callable[[str], None] = lambda s: None,
             backends: tuple[str, ...] = ("auto",)) -> dict:
    """Medians (ms) of every case at every size, in this process's thread settings."""
    import jax

    rows = []
    for T, N, H in sizes:
        def lstm(H=H, T=T, N=N):
            torch.manual_seed(0)
            m, x = torch.nn.LSTM(H, H), torch.randn(T, N, H)

            def run() -> None:
                m.zero_grad(set_to_none=True)
                m(x)[0].sum().backward()
            return run
        cases = [Case("torch nn.LSTM", lstm)]
        for name in cells:
            progress(f"JAX peer: {name} at T={T} N={N} H={H}: checking it is gatelab's")
            cases += cell_cases(name, T, N, H, backends)
        times = time_batched(cases, repeats, progress)
        rows.append({"sizes": {"T": T, "N": N, "I": H, "H": H},
                     "median_ms": {k: round(1e3 * statistics.median(v), 3)
                                   for k, v in times.items()}})
    return {"threads": torch.get_num_threads(), "repeats": repeats, "rows": rows,
            "torch": torch.__version__, "jax": jax.__version__,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _child(args: str) -> None:
    """A fresh process for one thread count (the parent sets ``XLA_FLAGS``)."""
    a = json.loads(args)
    n = a["threads"]
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(cpus[:n]))
    torch.set_num_threads(n)
    r = run_peer([tuple(s) for s in a["sizes"]], a["cells"], a["repeats"],
                 backends=tuple(a["backends"]))
    print(json.dumps(r))


def run_peer_threads(counts: list[int], sizes=PEER_SIZES, cells=PEER_CELLS, repeats: int = 7,
                     progress: Callable[[str], None] = lambda s: None,
                     backends: tuple[str, ...] = ("auto",)) -> list[dict]:
    """:func:`run_peer` in a fresh process per thread count (1 and 2 by default)."""
    runs = []
    for n in counts:
        progress(f"JAX peer at {n} thread(s) (a fresh process)")
        env = dict(os.environ)
        if n == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + ONE_THREAD_XLA).strip()
        args = json.dumps({"threads": n, "sizes": sizes, "cells": list(cells),
                           "repeats": repeats, "backends": list(backends)})
        code = f"from gatelab.engine.jax_peer_bench import _child; _child({args!r})"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env)
        if res.returncode:
            tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise EngineError(f"the JAX peer run at {n} thread(s) failed: {tail}")
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return runs


def format_peer(runs: list[dict]) -> str:
    """Markdown: medians per size and thread count, and the ratios gatelab / JAX and
    gatelab / nn.LSTM of the same run."""
    r0 = runs[0]
    lines = [f"JAX peer (jax {r0['jax']}, torch {r0['torch']}, {r0['date']}): forward + "
             f"backward of sum(outputs), float32, median of {r0['repeats']} interleaved rounds "
             f"(each sample the mean of back-to-back calls lasting ≥ {MIN_SAMPLE_S * 1e3:.0f} "
             "ms); the JAX cell generated from the same equations with the same parameters, "
             "checked equal "
             "before timing.", "",
             "| size | threads | case | median ms | / JAX | / nn.LSTM |",
             "|---|---:|---|---:|---:|---:|"]
    for r in runs:
        for row in r["rows"]:
            s, ms = row["sizes"], row["median_ms"]
            size = f"T={s['T']} N={s['N']} I=H={s['H']}"
            lstm = ms["torch nn.LSTM"]
            for k, v in ms.items():
                cell = k.split(":")[0]
                jax_ms = ms.get(f"{cell}: JAX")
                vs_jax = f"{v / jax_ms:.2f}" if jax_ms and k != f"{cell}: JAX" else "-"
                lines.append(f"| {size} | {r['threads']} | {k} | {v:.2f} | {vs_jax} | "
                             f"{v / lstm:.2f} |")
    return "\n".join(lines) + "\n"
