"""The gradient lab's tour section: the σ_max^t law, gradient flow of RNN, LSTM, GRU and MGU side
by side (free gates, then the switch setting that makes the memory state hold), and clipping.

Every sentence with a number is generated from the measurement it describes.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..cell import load_cell
from ..report.page import Section, TourContext
from . import plots
from .clip import clip_experiment
from .flow import FlowResult, gradient_flow, hold_setting
from .law import measure_law

FLOW_CELLS = ("rnn", "lstm", "gru", "mgu")


def _setting_text(force: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in force.items())


def _img(stem: str, alt: str) -> str:
    return (f"<p><img src='{stem}.svg' alt='{html.escape(alt)}'></p>"
            f"<p class='muted'>Files: <a href='{stem}.png'>PNG</a>, <a href='{stem}.svg'>SVG</a>, "
            f"<a href='{stem}.json'>JSON</a>.</p>")


def _dump(out: Path, stem: str, data: object) -> None:
    (out / f"{stem}.json").write_text(json.dumps(data), encoding="utf-8")


def _law_html(ctx: TourContext, out: Path) -> str:
    ctx.say("law of σ_max^t")
    steps = 60
    results = [measure_law(s, steps=steps) for s in (0.9, 1.0, 1.1)]
    skew = measure_law(1.1, steps=steps, coupling="independent")
    plots.law_plot(results, out / "grad-law")
    _dump(out, "grad-law", [r.to_json() for r in results] + [skew.to_json()])
    rows = "".join(
        f"<tr><td>{r.sigma_max:g}</td><td>{r.fitted_rate:.6f}</td><td>{r.relative_error:+.1e}</td>"
        f"<td>{r.norm[-1]:.3e}</td></tr>" for r in results)
    worst = max(abs(r.relative_error) for r in results)
    return (
        "<h3>The law: ‖∂h<sub>t</sub>/∂h<sub>0</sub>‖ = σ<sub>max</sub><sup>t</sup></h3>"
        "<p>In a plain RNN the gradient that reaches step 0 from step t has been multiplied by "
        "the recurrent matrix W once per step. If W's largest singular value σ<sub>max</sub> "
        "(how much W can stretch a vector) is above 1 it grows like σ<sub>max</sub><sup>t</sup> "
        "(explodes), below 1 it shrinks the same way (vanishes). Checked here on a linear RNN "
        "(H = hidden size):</p>"
        f"<p>A linear RNN (H = {results[0].hidden}) with W = U diag(σ) Uᵀ, singular values "
        f"evenly spaced from σ<sub>max</sub>/2 to σ<sub>max</sub>, unrolled for T = {steps} "
        "steps; autograd gives every Jacobian ∂h<sub>t</sub>/∂h<sub>0</sub> and we take its "
        "operator norm. The per-step rate fitted to the measured curves matches σ<sub>max</sub> "
        f"to a relative error of at most {worst:.1e}: below 1 the gradient from {steps} steps "
        f"back has shrunk to {results[0].norm[-1]:.2e}, above 1 it has grown to "
        f"{results[2].norm[-1]:.3g}.</p>"
        "<table><tr><th>σ<sub>max</sub></th><th>fitted rate</th><th>relative error</th>"
        f"<th>‖∂h<sub>{steps}</sub>/∂h<sub>0</sub>‖</th></tr>{rows}</table>"
        + _img("grad-law", "gradient norm against t on a log scale for three sigma_max")
        + "<p class='muted'>What to look at: the y axis is logarithmic, so σ<sub>max</sub><sup>t"
        "</sup> is a straight line, rising above 1 and falling below 1; the dots are measured, "
        "the dashed lines are the law.</p>"
        + "<p>σ<sub>max</sub><sup>t</sup> is exact here because W is symmetric. For a general "
        "W it is an upper bound: the growth rate is the spectral radius. With U and V drawn "
        f"independently and σ<sub>max</sub> = 1.1 the fitted rate is {skew.fitted_rate:.4f} "
        f"against a spectral radius of {skew.spectral_radius:.4f}.</p>"
    )


def _flow_html(ctx: TourContext, out: Path) -> str:
    steps = 50
    panels = []
    rows = []
    data = []
    for name in FLOW_CELLS:
        ctx.say(f"gradient flow: {name}")
        cell = load_cell(name)
        free = gradient_flow(cell, steps=steps)
        curves: list[tuple[str, FlowResult]] = [("gates free (init)", free)]
        force = hold_setting(cell, free.state)
        forced = gradient_flow(cell, steps=steps, force=force) if force else None
        if forced is not None:
            curves.append((_setting_text(force), forced))
        panels.append((f"{name}: ‖∂L/∂{free.state}‖", curves))
        data.extend(r.to_json() for _, r in curves)
        rows.append(
            f"<tr><td>{name}</td><td>{free.state}</td><td>{free.grad_norm[-1]:.2e}</td>"
            f"<td>{free.rate:.3f}</td><td>{_setting_text(force) if force else '—'}</td>"
            f"<td>{f'{forced.grad_norm[-1]:.6f}' if forced else '—'}</td>"
            f"<td>{f'{forced.spread:.1e}' if forced else '—'}</td></tr>")
    plots.flow_plot(panels, out / "grad-flow")
    _dump(out, "grad-flow", data)
    free_by = {d["cell"]: d for d in data if not d["force"]}
    forced_by = {d["cell"]: d for d in data if d["force"]}
    return (
        "<h3>Gradient flow through time, four cells side by side</h3>"
        "<p>The question behind gates: does a training signal at the last step still reach "
        "the memory many steps earlier? "
        f"For each cell (H = {data[0]['hidden']}, batch {data[0]['batch']}, "
        f"{data[0]['inputs']} inputs, T = {steps}) we project the "
        "final memory state on a random unit direction per sequence and measure by autograd "
        "the norm of the gradient that reaches the same state d steps earlier: the median over "
        "the batch with the quartiles as a band. The memory state ("
        + ", ".join(f"{c}: {d['state']}" for c, d in free_by.items())
        + ") and the switch setting that makes it hold (s′ = s) are both derived from the "
        "equations.</p>"
        + _img("grad-flow", "gradient norm against distance for " + ", ".join(FLOW_CELLS))
        + "<p class='muted'>What to look at: x is how many steps back, y (log scale) the "
        "gradient's size. Blue: the gates as a freshly initialised network computes them; a "
        "falling line is a vanishing gradient. Orange: the gates forced to the setting named in "
        "the legend, the one that holds the memory; a flat line means the gradient arrives "
        "undiminished, through the identity path."
        + "".join(f" {c} has no setting that holds its memory, so it has only the blue line."
                  for c in free_by if c not in forced_by) + "</p>"
        + "<table><tr><th>cell</th><th>memory</th><th>at d = T, gates free</th>"
        "<th>per-step factor</th><th>forced setting</th><th>at d = T, forced</th>"
        f"<th>relative spread, forced</th></tr>{''.join(rows)}</table>"
        + _flow_prose(free_by, forced_by, steps)
    )


def _flow_prose(free_by: dict[str, dict], forced_by: dict[str, dict], steps: int) -> str:
    """Sentences that state what the measured flow curves show."""
    decaying = [c for c, d in free_by.items() if d["rate"] < 1]
    slowest = max(free_by.values(), key=lambda d: d["rate"])
    rnn = free_by.get("rnn")
    text = "<p>"
    if len(decaying) == len(free_by):
        text += "At initialisation every cell's gradient decays geometrically"
    else:
        text += f"At initialisation {len(decaying)} of {len(free_by)} cells' gradients decay"
    if rnn is not None:
        text += (f"; the plain RNN's falls to {rnn['grad_norm'][-1]:.1e} after {steps} steps "
                 f"(factor {rnn['rate']:.3f} per step)")
    if slowest["rate"] < 1:
        text += (f", and even the slowest, {slowest['cell']}'s, loses a factor "
                 f"{slowest['rate']:.3f} per step: free gates at initialisation make no short "
                 "circuit. ")
    else:
        text += f"; {slowest['cell']}'s does not decay ({slowest['rate']:.3f} per step). "
    if forced_by:
        worst = max(d["spread"] for d in forced_by.values())
        names = ", ".join(f"{c} ({_setting_text(d['force'])})" for c, d in forced_by.items())
        if worst < 1e-6:
            text += (f"Forcing the switch setting — {names} — turns the memory update into the "
                     "identity and the curve is flat: the largest relative change over "
                     f"{steps} steps is {worst:.1e}, float precision. That is the article's "
                     "short circuit, measured.")
        else:
            text += (f"With the switch setting forced ({names}) the largest relative change "
                     f"over {steps} steps is {worst:.1e}.")
    return text + "</p>"


def _clip_html(ctx: TourContext, out: Path) -> str:
    steps = 200 if ctx.quick else 500
    done = [0]

    def tick() -> None:
        done[0] += 1
        if done[0] % 20 == 0:
            ctx.say(f"clipping runs: step {done[0]}/{3 * steps}")

    r = clip_experiment(steps=steps, tick=tick)
    plots.clip_plot(r, out / "grad-clip")
    _dump(out, "grad-clip", r.to_json())
    none, norm, value = r.runs["none"], r.runs["norm"], r.runs["value"]
    if none.first_nonfinite is not None:
        verdict = (f"Without clipping the loss climbs to {none.peak_loss:.2g} and the run turns "
                   f"non-finite at step {none.first_nonfinite}: {none.nonfinite_steps} of "
                   f"{steps} steps are inf/NaN.")
    else:
        verdict = (f"Without clipping the run stayed finite this time (peak loss "
                   f"{none.peak_loss:.2g}).")
    rows = "".join(
        f"<tr><td>{m}</td><td>{run.nonfinite_steps}</td><td>{run.peak_loss:.3g}</td>"
        f"<td>{run.final_loss:.4g}</td></tr>" for m, run in r.runs.items())
    return (
        "<h3>Gradient clipping on real runs</h3>"
        f"<p>A plain RNN (H = {r.hidden}) whose recurrent matrix starts at σ<sub>max</sub> = "
        f"{r.sigma_max:g} learns the adding problem (T = {r.seq_len}) with SGD (lr {r.lr:g}), "
        "three times from the same weights and batches: no clipping, "
        f"<code>clip_grad_norm_</code> (θ = {r.max_norm:g}) and <code>clip_grad_value_</code> "
        f"(c = {r.clip_value:g}). {html.escape(verdict)} Both clipped runs have "
        f"{norm.nonfinite_steps + value.nonfinite_steps} non-finite steps and end at a loss of "
        f"{norm.final_loss:.3f} (norm) and {value.final_loss:.3f} (value); always predicting 1 "
        f"scores {r.trivial_loss:.3f}. {_learned(r)}</p>"
        + _img("grad-clip", "training loss and gradient norm for three clipping modes")
        + "<p class='muted'>What to look at: left, the training loss of the three runs (log "
        "scale; a cross marks the step where a run first turned inf/NaN); right, the gradient's "
        "norm before clipping. Clipping rescales a gradient whose norm is above θ to norm θ "
        "(<code>clip_grad_norm_</code>) or caps each component at ±c "
        "(<code>clip_grad_value_</code>).</p>"
        + "<table><tr><th>clipping</th><th>non-finite steps</th><th>peak loss</th>"
        f"<th>mean loss, last 10 steps</th></tr>{rows}</table>"
    )


def _learned(r) -> str:  # noqa: ANN001 - ClipResult
    best = min(r.runs["norm"].final_loss, r.runs["value"].final_loss)
    if best < r.trivial_loss:
        return "Clipped training also gets below that level."
    return (f"Neither clipped run beats it in {r.steps} steps: clipping stops the blow-up, it "
            "does not by itself make the long-range sum learnable.")


def section(ctx: TourContext) -> Section:
    """The gradient lab (about 10 s in quick mode on 2 cores)."""
    out = Path(ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    body = (
        "<p>Why gates matter for training: a plain RNN cannot carry gradients far back in time "
        "(they vanish or explode), while a gate set to the right switch position opens an "
        "identity path that carries them undiminished. Three measurements: the law, the four "
        "cells compared, and gradient clipping, the usual fix for exploding gradients. "
        "Reproduce any figure with "
        "<code>gatelab grad law|flow|clip</code>; "
        "<code>gatelab grad spectrum RUN</code> gives the singular values of a trained run's "
        "recurrent matrices.</p>"
        + _law_html(ctx, out) + _flow_html(ctx, out) + _clip_html(ctx, out)
    )
    return Section("gradients", "Gradients: exploding, vanishing, clipping, short circuits", body,
                   summary="why plain RNN gradients vanish or explode, and how a gate "
                           "setting stops it")
