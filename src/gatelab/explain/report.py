"""The tour's sentiment part: train a small gated model on drug reviews, then show what its gates
do on the article's review sentence, how saturated they are, and how true the 0/1 reading is.

Everything here is measured on the run trained while the report is built; the prose is written
from those numbers and from the analysis of the cell's equations.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import torch

from ..cell import Cell, cell_unicode
from ..report.page import Section, TourContext
from .fidelity import Fidelity, fidelity
from .gates import REVIEW, TextGates, explain_text, replay_error
from .model import TextModel, from_run
from .render import plot_heatmap, to_html
from .report_units import unit_section
from .saturation import Saturation, plot, saturation
from .switches import Switch, layer_prefixes, setting_kind, setting_update, switches

CELL = "mgu"  # the article's exercise: one gate, two ganged switches
# The model explained is trained on tweets (34,000 labelled): the drug reviews (546 for training)
# are too few for a model trained from scratch to beat the majority class, which the section
# shows with a run of its own. Folder under the report, and sizes (quick / full) per task:
RUNS = {"tweets": Path("runs") / "sentiment", "drugs": Path("runs") / "drugs"}
QUICK = {
    "tweets": {"steps": 800, "hidden": 32, "embed": 32, "max_len": 50, "batch": 64, "lr": 3e-3,
               "eval_every": 200, "eval_size": 1000},
    "drugs": {"steps": 200, "hidden": 32, "embed": 32, "max_len": 100, "lr": 2e-3,
              "eval_every": 50},
}
# --full explains the cached model of gatelab.explain.tourmodel instead of a tweets run of its own.
FULL = {
    "drugs": {"steps": 800, "hidden": 64, "embed": 64, "max_len": 300, "lr": 2e-3,
              "eval_every": 100},
}
# What each kind of the analysis means, in words for a newcomer.
KIND_WORDS = {
    "hold": "the memory is kept exactly as it is: the word is skipped",
    "rnn": "a plain RNN step: the memory is rewritten from this word and the old memory",
    "residual_rnn": "the old memory is kept and a plain RNN step is added to it",
    "feedforward": "the old memory is dropped: the new one is made from this word alone",
    "zero": "the memory is cleared",
    "other": "a mix of the old memory and a new candidate (see the reduced update)",
}
esc = html.escape


def train_sentiment(out: Path, task: str, quick: bool, cell: str = CELL) -> Path:
    """Train one of the tour's sentiment models into ``out`` (replacing an older run there)."""
    from ..train import TrainConfig, train

    if (out / "config.json").is_file():
        shutil.rmtree(out)  # a run from an earlier tour: the report shows this tour's run
    sizes = (QUICK if quick else FULL)[task]
    return train(TrainConfig(task=task, cell=cell, seed=0, out=str(out), **sizes), progress=False)


# ---- prose ------------------------------------------------------------------------------------
def gate_roles(cell: Cell) -> str:
    """What each gate does at 0 and at 1, from the analysis (other gates left free)."""
    items = []
    for g in cell.gates:
        parts = []
        for v in (0, 1):
            upd = setting_update(cell, {g: v})
            kind = setting_kind(cell, {g: v})
            words = KIND_WORDS.get(kind.split(": ")[-1], "")
            parts.append(f"at <b>{g} = {v}</b> the update reduces to <code>{esc(upd)}</code> "
                         f"(<span class='kind'>{esc(kind)}</span>{': ' + words if words else ''})")
        items.append(f"<li>gate <b>{g}</b>: " + "; ".join(parts) + ".</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _words(tokens: list[str]) -> str:
    return ", ".join(f"“{esc(t)}”" for t in tokens) or "none"


def _gate_reading(cell: Cell, g: str) -> tuple[str, bool] | None:
    """How to read gate ``g``'s value, from the analysis: ``(sentence, high_takes_in)`` when one
    of its positions holds the memory (MGU's f = 0, GRU's z = 1), else ``None``."""
    if setting_kind(cell, {g: 0}) == "hold":
        return (f"{g} = 0 keeps the memory and {g} = 1 rewrites it, so {g} is the share of the "
                "memory a word rewrites", True)
    if setting_kind(cell, {g: 1}) == "hold":
        return (f"{g} = 1 keeps the memory and {g} = 0 rewrites it, so 1 − {g} is the share of "
                "the memory a word rewrites", False)
    return None


def _verdict_story(ex: TextGates) -> str:
    """Which words moved the running prediction most."""
    if ex.running is None or len(ex.tokens) < 2:
        return ""
    k = int(ex.probs.argmax())
    p = ex.running[:, k]
    jumps = torch.diff(p, prepend=torch.tensor([1.0 / len(ex.classes)]))
    up = [f"{ex.tokens[i]} ({float(jumps[i]):+.2f})" for i in jumps.argsort(descending=True)[:3]
          if jumps[i] > 0]
    down = [f"{ex.tokens[i]} ({float(jumps[i]):+.2f})" for i in jumps.argsort()[:2]
            if jumps[i] < 0]
    text = (f"<p>The grey row is the verdict the model would give if the text stopped at that "
            f"word: p({esc(ex.classes[k])}) ends at {float(p[-1]):.2f}. The words that raised it "
            f"most are {_words(up)}")
    return text + (f"; the ones that lowered it most, {_words(down)}.</p>" if down else ".</p>")


def describe(cell: Cell, ex: TextGates, unknown: set[str]) -> str:
    """Plain-language reading of one explained text: how the verdict built up; per gate, where
    it was low and high; per kind, which words got which switch setting."""
    out = [_verdict_story(ex)]
    for prefix in layer_prefixes(cell, ex):
        sw: list[Switch] = switches(cell, ex, prefix)
        for g in cell.gates:
            mean = ex.mean(prefix + g)
            order = mean.argsort().tolist()
            k = min(4, len(order))
            low = [f"{ex.tokens[i]} ({float(mean[i]):.2f})" for i in order[:k]]
            high = [f"{ex.tokens[i]} ({float(mean[i]):.2f})" for i in order[::-1][:k]]
            reading = _gate_reading(cell, g)
            if reading is None:
                out.append(f"<p>Gate <b>{esc(prefix + g)}</b> averaged {float(mean.mean()):.2f} "
                           f"over the sentence: lowest on {_words(low)}, highest on "
                           f"{_words(high)}.</p>")
                continue
            sentence, high_takes_in = reading
            took, passed = (high, low) if high_takes_in else (low, high)
            out.append(f"<p>Gate <b>{esc(prefix + g)}</b>: {esc(sentence)}. Over the sentence it "
                       f"averaged {float(mean.mean()):.2f}. The words the model took in most "
                       f"were {_words(took)}; the words it let pass by most were "
                       f"{_words(passed)}.</p>")
        groups: dict[str, list[str]] = {}
        for s in sw:
            groups.setdefault(f"{s.label} → {s.kind}", []).append(s.token)
        lis = "".join(f"<li><b>{esc(key)}</b> ({len(toks)} of {len(sw)} words): "
                      f"{_words(toks)}</li>" for key, toks in groups.items())
        out.append("<p>Rounding each word's mean gate to a switch (simplification 3) gives these "
                   f"settings:</p><ul>{lis}</ul>")
        if len(groups) == 1 and sw:
            closed = [1 - s.agreement[g] if s.setting[g] == 0 else s.agreement[g]
                      for s in sw for g in cell.gates]
            out.append("<p>Every word lands on the same setting: the mean gate stays on one side "
                       "of 0.5 here. Unit by unit the switches do move: the share of gate units "
                       f"at 1 ranges from {_pct(min(closed))} to {_pct(max(closed))} over the "
                       "words (hover a switch cell to see it).</p>")
    if unknown:
        out.append(f"<p class='muted'>{_words(sorted(unknown))} never occurred twice in the "
                   "training texts, so the model reads each of them as the one unknown word "
                   "<code>&lt;unk&gt;</code>.</p>")
    return "".join(out)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def saturation_html(sat: Saturation, img: str, n_texts: int) -> str:
    rows = "".join(
        f"<tr><td>{esc(g)}</td><td>{_pct(s['below_0.1'])}</td><td>{_pct(s['above_0.9'])}</td>"
        f"<td>{_pct(s['between'])}</td></tr>" for g, s in sat.summary().items())
    between = [s["between"] for s in sat.summary().values()]
    verdict = ""
    if between:
        b = sum(between) / len(between)
        verdict = (f"On average {_pct(b)} of the gate values sit between 0.1 and 0.9: "
                   + ("most of the time the gates act as near-binary switches, as simplification "
                      "(3) assumes." if b < 0.5 else
                      "most gate values are <em>not</em> near 0 or 1, so simplification (3) is a "
                      "coarse reading of this small, briefly trained model; the fidelity test "
                      "below measures what it costs."))
    return (f"<p>Karpathy, Johnson &amp; Fei-Fei (2015) asked how often each gate unit is "
            f"<em>saturated</em>. Over the {n_texts} test texts ({sat.steps} word steps), "
            "each dot below is one unit of a gate: x is the fraction of steps it was below 0.1 "
            "(switch open), y the fraction above 0.9 (switch closed). A unit on the dashed "
            "diagonal is always a clean 0/1 switch; a unit near the corner (0, 0) always stays "
            f"in between. {verdict}</p>"
            f"<img src='{img}' alt='gate saturation scatter plot'>"
            "<table><tr><th>gate</th><th>&lt; 0.1 (open)</th><th>&gt; 0.9 (closed)</th>"
            f"<th>in between</th></tr>{rows}</table>")


def fidelity_html(fid: Fidelity, replay_gap: float) -> str:
    rows = "".join(
        f"<tr><td>{esc(c.name)}</td><td>{_pct(c.accuracy)}</td><td>{c.loss:.3f}</td>"
        f"<td>{_pct(c.changed)}</td><td>{c.shift:.3f}</td></tr>" for c in fid.conditions)
    text = ""
    if len(fid.conditions) > 1:
        a = fid.all_rounded
        text = (f"With every gate rounded to 0 or 1 at every step, test accuracy goes from "
                f"{_pct(fid.exact.accuracy)} to {_pct(a.accuracy)}, the loss from "
                f"{fid.exact.loss:.3f} to {a.loss:.3f}, and {_pct(a.changed)} of the "
                f"{fid.n} predictions change (mean change in class probability "
                f"{a.shift:.3f}).")
    return ("<p>How true is the one diagram? Simplification (3) draws each gate as a switch. "
            "Here the trained model runs with each gate value replaced by its rounding "
            "(0 below 0.5, 1 from 0.5), through the same reference equations, and we compare "
            f"with the exact model on the test texts. {text}</p>"
            "<table><tr><th>gates made 0/1</th><th>accuracy</th><th>loss</th>"
            "<th>predictions changed</th><th>mean prob. shift</th></tr>" + rows + "</table>"
            f"<p class='muted'>The replay through the cell's equations matches the trained "
            f"layer's own output to {replay_gap:.1e} in the logits, so these are the gates the "
            "model really computed.</p>")


# ---- the section ------------------------------------------------------------------------------
def _summary(run: Path) -> dict:
    """Test accuracy, majority baseline, training size and time of a run folder."""
    from ..train import load_run

    r = load_run(run)
    last = r.metrics[-1] if r.metrics else {}
    return {"acc": float(last.get("metric", float("nan"))),
            "baseline": float(r.config.get("baseline", 0.0)),
            "n_train": int(r.config.get("n_train", 0)), "seconds": float(last.get("seconds", 0)),
            "classes": list(r.classes), "max_len": int(r.config.get("max_len", 0))}


def drugs_html(run: Path) -> str:
    """The drug-review run: its accuracy against the majority class, and its verdict on the
    review sentence."""
    d = _summary(run)
    model = from_run(run)
    ex = explain_text(model, REVIEW)
    gain = d["acc"] - d["baseline"]
    if gain >= 0.03:
        why = ("It learned something, but a model trained on many more texts gives the gates "
               "more to show.")
    else:
        why = (f"{'Barely better than' if gain > 0 else 'No better than'} that: a few hundred "
               "reviews are too few for a network that starts from nothing, and the gates of a "
               "model that learned little would explain little.")
    return (f"<p>The article's example is a product review, so the tour first trained the same "
            f"cell on the drug reviews (drugs.com via UCI: {d['n_train']} training reviews, "
            f"positive or negative, first {d['max_len']} words of each; {d['seconds']:.0f} s). "
            f"Its test accuracy is {_pct(d['acc'])}; always answering the majority class would "
            f"score {_pct(d['baseline'])}. {why} (It calls the review sentence "
            f"<b>{esc(ex.label)}</b>, p = {float(ex.probs.max()):.2f}.) The model explained "
            f"below is trained on a larger set, tens of thousands of labelled tweets; "
            f"<code>gatelab explain --run {esc(str(run))}</code> explains the drug-review model "
            f"the same way.</p>")


def build(ctx: TourContext, model: TextModel, run: Path, extra: str = "", how: str = "") -> str:
    """The section's HTML for a trained ``model`` (files written under ``ctx.out``); ``extra``
    is inserted after the introduction, ``how`` (which model this is, how it was made) in it."""
    cell = model.cell
    ctx.say("explaining the review sentence")
    ex = explain_text(model, REVIEW)
    ids = model.encode(REVIEW)[1].tolist()
    unknown = {t for t, i in zip(ex.tokens, ids, strict=True) if i == 1}
    heat = plot_heatmap(ex, ctx.out / "explain-gates.png")
    data = model.test_set()
    ctx.say(f"saturation over {len(data)} test texts")
    sat = saturation(model, data.ids, max_len=model.max_len)
    plot(sat, ctx.out / "explain-saturation.png", f"{cell.name}: gate units over the test set")
    ctx.say(f"fidelity over {len(data)} test texts: gates rounded to 0/1")
    fid = fidelity(model, data.ids, data.labels, max_len=model.max_len)
    from ..data.text import pad_batch

    x, lengths = pad_batch([i[: model.max_len] for i in data.ids[:32]])
    gap = replay_error(model, x.T.contiguous(), lengths)
    d = _summary(run)
    rel = esc(str(run))
    return f"""
<p>The article's motivating example: reading a review, a gated network keeps the words that
matter and lets the others pass by. To watch this happen, the model explained here is a
<b>{esc(cell.name.upper())}</b> ({model.hidden_size} units, {len(model.layers)} layer) trained to
read a text word by word and classify it as {esc(" / ".join(d["classes"]))}, from the state after
its last word ({d["n_train"]} training texts, first {d["max_len"]} words of each;
{d["seconds"]:.0f} s of training). Its test accuracy is <b>{_pct(d["acc"])}</b>; always answering
the majority class would score {_pct(d["baseline"])}.</p>
{how}
{extra}
<pre class='equations'>{esc(cell_unicode(cell))}</pre>
<p>What each gate does, from the analysis of these equations:</p>{gate_roles(cell)}
<h3>The review sentence, word by word</h3>
<p>“{esc(REVIEW)}”</p>
<p>How to read the table (scroll sideways for the whole sentence): each column is a word; each
coloured row a gate (white = 0, full colour = 1; hover for numbers): first its mean over the
{model.hidden_size} units (the one-dimensional gate of simplification 2), then the three
units that vary most. The last rows round the mean to a switch
setting and name what the cell does there (simplification 3).</p>
{to_html(cell, ex)}
{describe(cell, ex, unknown)}
{unit_section(cell, ex)}
<p>Every unit of every gate on every word: one row per unit, one column per word, darker
= closer to 1. Rows that change colour along the sentence are units that react to particular
words.</p>
<img src='{heat.name}' alt='per-unit gate heatmap of the review sentence'>
<h3>Saturation: are the gates switches?</h3>
{saturation_html(sat, 'explain-saturation.png', len(data))}
<h3>Fidelity of the one diagram</h3>
{fidelity_html(fid, gap)}
<p class='muted'>Try your own text: <code>gatelab explain "your review" --run {rel}</code>;
also <code>gatelab explain saturation --run {rel}</code> and
<code>gatelab explain fidelity --run {rel}</code>.</p>
"""


def _missing(what: str, e: Exception) -> str:
    return (f"<p class='muted'>The {what} are not installed here, so they are left out: "
            f"{esc(str(e))}</p>")


def _explained_run(ctx: TourContext, sizes: dict) -> tuple[Path, str]:
    """The run the section explains, and a paragraph saying which model it is and how it was
    made: the cached model the measurements favour (:mod:`gatelab.explain.tourmodel`) when it is
    built, or ``--full`` builds it; else (quick, not built) a model trained now in a minute."""
    from . import tourmodel

    cmd = "<code>gatelab explain build-model</code>"
    if not ctx.quick or tourmodel.is_built():
        if not tourmodel.is_built():
            ctx.say(f"training the explained model once ({tourmodel.MODEL['steps']} steps; "
                    "cached for later tours)")
        path = tourmodel.build()
        return path, (f"<p class='note'>This is the model the measurements favour "
                      f"(<code>benchmarks/RESULTS-gates.md</code>): "
                      f"{esc(tourmodel.describe(path))}. It was trained once, by {cmd} or "
                      f"<code>gatelab tour --full</code>, and is retrained only when its "
                      f"config or the engine changes.</p>")
    ctx.say(f"training {CELL.upper()} on tweets ({sizes['tweets']['steps']} steps)")
    run = train_sentiment(ctx.out / RUNS["tweets"], "tweets", ctx.quick)
    m = tourmodel.MODEL
    return run, (f"<p class='note'>This is the quick tour's model, trained just now in about a "
                 f"minute. Its gates mostly stay in between 0 and 1. The model the "
                 f"measurements favour ({m['cell'].upper()}, {m['hidden']} units, "
                 f"{m['steps']} steps, keep-gate bias {tourmodel.KEEP_BIAS:g} at "
                 f"initialisation; <code>benchmarks/RESULTS-gates.md</code>) takes a few "
                 f"minutes: build it once with {cmd} (or <code>gatelab tour --full</code>) "
                 f"and later quick tours show it.</p>")


def section(ctx: TourContext) -> Section:
    """Train (quick: about a minute on 2 cores), explain, and measure; see the module doc.
    Puts the explained run's folder in ``ctx.shared["sentiment_run"]`` (the drug-review run's
    in ``ctx.shared["drug_run"]``). A missing data package becomes a note, not a failure."""
    from ..data import DataUnavailable

    sizes = QUICK if ctx.quick else FULL
    title = "What the gates do on real text"
    torch.manual_seed(0)
    ctx.say(f"training {CELL.upper()} on drug reviews ({sizes['drugs']['steps']} steps)")
    try:
        drugs: Path | None = train_sentiment(ctx.out / RUNS["drugs"], "drugs", ctx.quick)
        ctx.shared["drug_run"] = drugs
    except DataUnavailable as e:
        drugs, drugs_note = None, _missing("drug reviews", e)
    try:
        run, how = _explained_run(ctx, sizes)
        extra = drugs_html(drugs) if drugs is not None else drugs_note
    except DataUnavailable as e:
        if drugs is None:
            return Section("explain", title, drugs_note + _missing("tweets", e))
        run, extra, how = drugs, _missing("tweets", e), ""
    ctx.shared["sentiment_run"] = run
    body = build(ctx, from_run(run), run, extra, how)
    return Section("explain", title, body,
                   summary="a trained model's gates word by word on a review; are they "
                           "really 0/1 switches?")
