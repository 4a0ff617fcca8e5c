"""The tour's study section: a small study run live on a local Ray, and the committed
reproduction of Greff et al. (2017) read from ``benchmarks/study`` (when this is a checkout)."""

from __future__ import annotations

import datetime as dt
import html
import json
import shutil
from pathlib import Path

from rich.console import Console

from ..report.page import Section, TourContext

LIVE = {"cells": ["lstm", "gru"], "trials": 2, "fixed": {"steps": 30, "T": 10, "hidden": 8,
                                                         "eval_size": 100, "eval_every": 30}}
BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "study"
REPRO = ("jsb", "stdlib")
TRAINABILITY = "trainability-pilot"  # the committed pilot of `gatelab trainability`


def _table(summary: dict) -> str:
    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.3g}"

    rows = "".join(
        f"<tr><td>{html.escape(v['cell'])}</td><td>{v['finished']}/{v['trials']}</td>"
        f"<td>{f(v['best'])}</td><td>{f(v['median'])}</td><td>{f(v.get('welch_p'))}</td>"
        f"<td>{f(v.get('mannwhitney_p'))}</td><td>{html.escape(v.get('verdict', 'vanilla'))}"
        f"</td></tr>" for v in summary["variants"])
    main = (summary["fanova"].get("all") or {}).get("main", {})
    imp = ", ".join(f"{html.escape(n)} {v:.2f}" for n, v in
                    sorted(main.items(), key=lambda kv: -kv[1]))
    return (f"<table><tr><th>cell</th><th>finished</th><th>best</th><th>median</th>"
            f"<th>Welch p</th><th>Mann–Whitney p</th><th>vs {html.escape(summary['vanilla'])}"
            f"</th></tr>{rows}</table><p>fANOVA main effects: {imp or '–'}</p>")


def _live(ctx: TourContext) -> tuple[str, str]:
    from .analysis import write_summary
    from .runner import run_study
    from .space import StudySpec

    out = ctx.out / "study-live"
    if out.exists():
        shutil.rmtree(out)  # the tour's own folder: a fresh study every time
    spec = StudySpec("adding", LIVE["cells"], LIVE["trials"], fixed=dict(LIVE["fixed"]))
    run_study(spec, out, cpus=2, console=Console(quiet=True))
    s = write_summary(out)
    fx = LIVE["fixed"]
    cmd = (f"gatelab study adding --cells {','.join(LIVE['cells'])} --trials {LIVE['trials']} "
           f"--steps {fx['steps']} -T {fx['T']} --hidden {fx['hidden']} --eval-size "
           f"{fx['eval_size']} --eval-every {fx['eval_every']} --cpus 2")
    when = dt.date.today().isoformat()
    body = (f"<h3>A study run while this report was built</h3><p class='muted'>"
            f"<code>{html.escape(cmd)}</code> ({when}, a local Ray on 2 CPUs). Far too small "
            f"to conclude anything: it shows the machinery.</p>{_table(s)}"
            f"<img src='study-live/lr.png' alt='learning rate against test MSE'>")
    return body, f"{s['finished']}/{s['trials']} live trials"


def _committed(ctx: TourContext) -> str:
    parts = []
    for name in REPRO:
        folder = BENCH / name
        sj = folder / "summary.json"
        if not sj.is_file():
            continue
        s = json.loads(sj.read_text(encoding="utf-8"))
        dest = ctx.out / "study-repro" / name
        dest.mkdir(parents=True, exist_ok=True)
        imgs = ""
        for fig in s.get("figures", []):
            if (folder / fig).is_file():
                shutil.copy(folder / fig, dest / fig)
                imgs += f"<img src='study-repro/{name}/{fig}' alt='{fig}'>"
        parts.append(f"<h4>{html.escape(s['task'])}: {s['finished']}/{s['trials']} trials"
                     f"</h4>{_table(s)}{imgs}")
    if not parts:
        return ("<p class='muted'>The committed reproduction (benchmarks/study) is not part of "
                "this installation; see RESULTS-study.md in the repository.</p>")
    return ("<h3>The committed reproduction</h3><p class='muted'>Made by "
            "<code>sh benchmarks/study/run.sh</code> (2026-12-02, 9 cells × 20 draws per task, "
            "40-step trials on a shared 2-core CPU); findings against Greff et al. and "
            "Jozefowicz et al. in benchmarks/RESULTS-study.md.</p>" + "".join(parts))


def _trainability(ctx: TourContext) -> str:
    """The committed trainability pilot: its cell table, the read-outs' fits and its figure."""
    folder = BENCH / TRAINABILITY
    rj = folder / "results.json"
    if not rj.is_file():
        return ""
    res = json.loads(rj.read_text(encoding="utf-8"))
    sp = res["spec"]

    def f(x: object, d: int = 3) -> str:
        if x is None:
            return "–"
        return ("yes" if x else "no") if isinstance(x, bool) else f"{x:.{d}g}"

    tasks = sp["tasks"]
    head = "".join(f"<th>{html.escape(t)}: learned</th>" for t in tasks)
    rows = "".join(
        f"<tr><td>{html.escape(c['cell'])}</td><td>{f(c['has_hold'])}</td>"
        f"<td>{f(c['identity_modes'], 2)}</td><td>{f(c['scan_parallel'])}</td>"
        f"<td>{f(c['flow_exponent'])}</td>"
        + "".join(f"<td>{c[t]['successes']}/{c[t]['runs']} (score "
                  f"{f(c[t]['median_score'], 2)})</td>" for t in tasks) + "</tr>"
        for c in res["cells"])
    fits = "".join(
        f"<tr><td>{html.escape(x['readout'])}</td><td>{f(x['loco_accuracy'], 2)}</td>"
        f"<td>{f(x['majority_accuracy'], 2)}</td><td>"
        f"{html.escape(x['note'] or ', '.join(m['cell'] for m in x['misses']) or '–')}"
        f"</td></tr>" for x in res["fits"])
    dest = ctx.out / "study-trainability"
    dest.mkdir(parents=True, exist_ok=True)
    img = ""
    if (folder / res.get("figure", "")).is_file():
        shutil.copy(folder / res["figure"], dest / res["figure"])
        img = f"<img src='study-trainability/{res['figure']}' alt='trainability'>"
    fx = sp["fixed"]
    return (f"<h3>Does the analysis predict who learns? A PILOT</h3><p class='muted'>"
            f"<code>gatelab trainability</code>: {len(res['cells'])} cells × "
            f"{html.escape(', '.join(tasks))} at T = {sp['T']} × {sp['seeds']} seeds, hidden "
            f"{fx.get('hidden')}, early stopping (patience {fx.get('patience')}, cap "
            f"{fx.get('steps')} steps); {res['finished']}/{res['runs']} runs finished. A pilot "
            "that shows the pipeline, far too small and too short to answer the question; "
            "the full study's budget is in benchmarks/RESULTS-study.md.</p>"
            f"<table><tr><th>cell</th><th>hold setting</th><th>identity modes</th>"
            f"<th>scan</th><th>flow exponent</th>{head}</tr>{rows}</table>"
            "<table><tr><th>read-out</th><th>leave-one-cell-out accuracy</th>"
            f"<th>majority</th><th>cells it gets wrong</th></tr>{fits}</table>{img}")


def section(ctx: TourContext) -> Section:
    ctx.say("study: a tiny random search on a local Ray")
    live, summary = _live(ctx)
    body = f"""
<p>Which cell should you use, and which hyperparameters matter? Greff et al. (2017, “LSTM: A
Search Space Odyssey”) answered with random search: every LSTM variant trained many times with
random learning rates, sizes and so on, then compared per variant (box plots, Welch's t-test
against the vanilla LSTM) and analysed with fANOVA (how much of the spread each hyperparameter
explains). <code>gatelab study</code> does the same for any cells, each trial a normal
<code>gatelab train</code> run, executed by Ray Tune on this machine or a Ray cluster
(<code>--address</code>). Draw <em>k</em> gives every cell the same hyperparameters, so the
cells are compared on equal terms.</p>
{live}
{_committed(ctx)}
{_trainability(ctx)}
"""
    return Section("study", "Which cell? A hyperparameter study on Ray", body,
                   summary=f"random search over cells and hyperparameters: {summary}")
