"""The tour's training section: a quick cell-vs-cell comparison on the adding problem.

RNN, LSTM, GRU and MGU learn the adding problem at a short length (T=30 in quick mode, one seed
each); the section shows the learning curves and the leaderboard, and leaves the run folders in
``ctx.shared["compare_runs"]`` (cell name -> list of run folders) for later sections.
"""

from __future__ import annotations

import html
import shutil

from ..report.page import Section, TourContext
from .compare import run_compare
from .config import TrainConfig

QUICK = {"T": 30, "hidden": 32, "steps": 600, "batch": 64, "seeds": 1}
FULL = {"T": 100, "hidden": 64, "steps": 2000, "batch": 64, "seeds": 3}
CELLS = ["rnn", "lstm", "gru", "mgu"]


def section(ctx: TourContext) -> Section:
    sizes = QUICK if ctx.quick else FULL
    out = ctx.out / "train-compare"
    if out.exists():
        shutil.rmtree(out)  # this folder belongs to the tour: rebuild it from scratch
    base = TrainConfig(task="adding", cell=CELLS[0], T=sizes["T"], hidden=sizes["hidden"],
                       steps=sizes["steps"], batch=sizes["batch"], lr=5e-3,
                       eval_every=max(1, sizes["steps"] // 20), eval_size=500,
                       threshold=0.05 if ctx.quick else 0.01)
    board = run_compare(base, CELLS, sizes["seeds"], out, progress=False, say=ctx.say)
    ctx.shared["compare_runs"] = {r["cell"]: r["runs"] for r in board["rows"]}
    ctx.shared["compare_board"] = board
    def sd(r: dict) -> str:  # one seed has no spread to show
        return f" ± {r['spread']:.4f}" if sizes["seeds"] > 1 else ""

    mse_head = "final test MSE (mean ± sd)" if sizes["seeds"] > 1 else "final test MSE"
    rows = []
    for i, r in enumerate(board["rows"], 1):
        st = "never" if r["steps_to_threshold"] is None else f"{r['steps_to_threshold']:.0f}"
        rows.append(f"<tr><td>{i}</td><td>{html.escape(r['cell'])}</td>"
                    f"<td>{r['final']:.4f}{sd(r)}</td><td>{r['params']}</td>"
                    f"<td>{r['ms_per_step']:.1f}</td><td>{st} ({r['reached']})</td></tr>")
    cmd = (f"gatelab compare adding --cells {','.join(CELLS)} --seeds {sizes['seeds']} "
           f"-T {sizes['T']} --hidden {sizes['hidden']} --steps {sizes['steps']} "
           f"--batch {sizes['batch']} --lr 0.005 --threshold {board['threshold']}")
    body = f"""
<p>The <em>adding problem</em> (Hochreiter &amp; Schmidhuber 1997): each step carries a number
and a marker; exactly two steps are marked, one in each half of the sequence, and the network must
output the sum of the two marked numbers at the end. A network that cannot carry the first number
across the sequence can only answer the mean, 1, which gives a test MSE of
{board['baseline']:.3f} (the dotted line). Gates that hold a value (an LSTM forget gate near 1,
a GRU update gate near 1, the MGU gate near 0) give it a path to carry it.</p>
<p>Sequence length T = {sizes['T']}, hidden size {sizes['hidden']}, {sizes['steps']} Adam steps
of {sizes['batch']} sequences, {sizes['seeds']} seed(s) per cell, trained while this report was
built (CPU). The threshold column counts evaluated steps until the test MSE first reached
{board['threshold']}; in parentheses, how many seeds got there.</p>
<img src="train-compare/curves.png" alt="learning curves on the adding problem">
<p class="muted">What to look at: test error (log scale, lower is better) against training step.
A curve that stays on the dotted baseline has not learned to carry the first number to the end;
a curve that drops below it has.</p>
<table><tr><th>rank</th><th>cell</th><th>{mse_head}</th><th>parameters</th>
<th>ms / step</th><th>steps to MSE ≤ {board['threshold']}</th></tr>{''.join(rows)}</table>
<p class="muted">Reproduce: <code>{html.escape(cmd)}</code>. Leaderboard files:
<a href="train-compare/leaderboard.md">leaderboard.md</a>,
<a href="train-compare/leaderboard.json">leaderboard.json</a>.</p>
"""
    best = board["rows"][0]
    return Section("train", "Training: cells compared on the adding problem", body,
                   summary=f"can each cell learn to remember? Best on the adding problem "
                           f"(T={sizes['T']}): {best['cell']}, test MSE {best['final']:.4f}")
