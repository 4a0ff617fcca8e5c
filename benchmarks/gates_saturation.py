"""Where do gates become switches? Saturation and 0/1 fidelity across training, size, cell, bias.

    python benchmarks/gates_saturation.py --part stdlib     --out benchmarks/gates   # ~8 CPU-min
    python benchmarks/gates_saturation.py --part sentiment  --out benchmarks/gates   # ~17 CPU-min
    (or split: --part sentiment --only length,size,cell & --only bias, then --merge)
    python benchmarks/gates_saturation.py --tiny --out /tmp/gates                    # smoke run

Part ``stdlib`` reproduces the gate-saturation plot of Karpathy, Johnson & Fei-Fei (2015, Fig. 3)
on gatelab's standard-library character model: LSTM and GRU, 1-3 layers, each unit of each gate a
dot at (fraction of steps < 0.1, fraction > 0.9) over held-out text. Part ``sentiment`` trains the
tweet classifier in many variants (training length, width, cell, keep-gate bias at
initialisation) and measures saturation, the 0/1 fidelity (every gate rounded) and how the
review sentence's words split into kept and rewritten by the keep gate's units.

Training goes through :func:`gatelab.explain.fit.fit`: the trainer's step (Adam, norm clipping
1.0, one thread, the task's own batches) with snapshots of one run at several lengths and the
keep-gate bias set at initialisation (:func:`gatelab.explain.keep.shift_keep_bias`), which
``TrainConfig`` does not have. Every number in ``OUT/*.json`` comes from the run made by this
script; ``OUT/*.md`` holds the tables and ``OUT/*.png`` the figures.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from gatelab import load_cell
from gatelab.explain import fidelity, from_module, saturation
from gatelab.explain.fit import evaluate as fit_evaluate
from gatelab.explain.fit import fit
from gatelab.explain.gates import REVIEW, explain_text
from gatelab.explain.keep import keep_gate
from gatelab.explain.model import Labelled
from gatelab.explain.saturation import sequence_saturation
from gatelab.train import TrainConfig


def evaluate(model: torch.nn.Module, task) -> float:  # noqa: ANN001 - a gatelab Task
    """The task's metric over its evaluation set (accuracy, or bits per character)."""
    return fit_evaluate(model, task)[0]


def layer_params(model: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().float().clone() for k, v in model.rnn.cell_params(i).items()}
            for i in range(model.rnn.num_layers)]


# ---- part 1: the character model --------------------------------------------------------------
STDLIB = [(cell, layers) for cell in ("lstm", "gru") for layers in (1, 2, 3)]


def char_inputs(model: torch.nn.Module, task, n: int, T: int) -> Iterator[torch.Tensor]:  # noqa: ANN001
    """``n`` held-out windows of ``T`` characters, embedded: one batch ``(T, n, I)``."""
    ids = task.test_ids[: n * T].view(n, T)
    with torch.no_grad():
        yield model.embed(ids).transpose(0, 1).float().contiguous()


def run_stdlib(out: Path, tiny: bool) -> dict:
    steps, hidden = (3, 8) if tiny else (150, 64)
    results = {}
    for cell, layers in STDLIB:
        cfg = TrainConfig(task="stdlib", cell=cell, hidden=hidden, layers=layers, T=50, batch=32,
                          lr=3e-3, embed=32, steps=steps, train_size=20_000 if tiny else 600_000,
                          eval_size=8 if tiny else 60)
        for step, model, task, secs in fit(cfg, 0.0, [steps]):
            bpc = evaluate(model, task)
            sat = sequence_saturation(model.rnn.cell, layer_params(model),
                                      char_inputs(model, task, 8 if tiny else 30,
                                                  20 if tiny else 100))
            key = f"{cell}-{layers}L"
            results[key] = {"cell": cell, "layers": layers, "hidden": hidden, "steps": step,
                            "bpc": bpc, "seconds": secs, "steps_measured": sat.steps,
                            "summary": sat.summary(), "units": sat.to_json()["units"]}
            print(f"{key}: bpc {bpc:.3f} ({secs:.0f}s)", flush=True)
    (out / "stdlib.json").write_text(json.dumps(results, indent=1))
    plot_karpathy(results, out / "karpathy-stdlib.png")
    (out / "stdlib.md").write_text(stdlib_table(results))
    return results


def plot_karpathy(results: dict, path: Path) -> None:
    """Karpathy et al.'s Fig. 3 layout: a panel per gate of the 3-layer LSTM and GRU, a colour
    per layer, each dot a unit at (fraction < 0.1, fraction > 0.9)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(cell, max((r for r in results.values() if r["cell"] == cell),
                       key=lambda r: r["layers"])) for cell in ("lstm", "gru")]
    n = max(len(load_cell(c).gates) for c, _ in rows)
    fig, axes = plt.subplots(2, n, figsize=(3.1 * n, 6.4), squeeze=False)
    colours = ["#0072b2", "#009e73", "#d55e00"]
    for i, (cell, r) in enumerate(rows):
        gates = list(load_cell(cell).gates)
        for ax in axes[i][len(gates):]:
            ax.set_axis_off()
        for j, g in enumerate(gates):
            ax = axes[i][j]
            ax.plot([0, 1], [1, 0], color="#bbb", lw=1, ls="--")
            for layer in range(r["layers"]):
                lab = g if r["layers"] == 1 else f"L{layer + 1}.{g}"
                u = r["units"][lab]
                ax.scatter(u["left"], u["right"], s=10, alpha=0.7, color=colours[layer % 3],
                           edgecolor="none", label=f"layer {layer + 1}")
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_aspect("equal")
            ax.set_title(f"{cell.upper()} gate {g}", fontsize=10)
            ax.set_xlabel("fraction < 0.1 (left-saturated)", fontsize=8)
            ax.set_ylabel("fraction > 0.9 (right-saturated)", fontsize=8)
            if j == 0:
                ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Gate saturation on the standard-library character model "
                 f"({rows[0][1]['steps']} steps, {rows[0][1]['hidden']} units per layer)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def stdlib_table(results: dict) -> str:
    lines = ["| model | bpc | gate | mean < 0.1 | mean > 0.9 | units > 0.9 half the time | "
             "units < 0.1 half the time |", "|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        for lab, s in r["summary"].items():
            u = r["units"][lab]
            right = sum(v > 0.5 for v in u["right"])
            left = sum(v > 0.5 for v in u["left"])
            lines.append(f"| {key} | {r['bpc']:.2f} | {lab} | {s['below_0.1']:.1%} | "
                         f"{s['above_0.9']:.1%} | {right}/{len(u['right'])} | "
                         f"{left}/{len(u['left'])} |")
    return "\n".join(lines) + "\n"


# ---- part 2: the sentiment model ---------------------------------------------------------------
BASE = {"task": "tweets", "hidden": 32, "embed": 32, "max_len": 50, "batch": 64, "lr": 3e-3,
        "eval_size": 1000}
# (name, cell, hidden, keep bias, snapshot steps): one training run each.
SENTIMENT = [
    ("length", "mgu", 32, 0.0, [200, 400, 1000]),
    ("size", "mgu", 64, 0.0, [400]),
    ("cell", "gru", 32, 0.0, [400]),
    ("cell", "lstm", 32, 0.0, [400]),
    ("bias", "gru", 32, 2.0, [400, 1000]),
    ("bias", "mgu", 32, 2.0, [400]),
    ("bias", "lstm", 32, 2.0, [400]),
    # the tour's model (gatelab.explain.tourmodel.MODEL): the most saturated row, trained longer
    ("tour", "mgu", 32, 2.0, [1000]),
]


def review_split(model_t, cell) -> dict:  # noqa: ANN001
    """How the review sentence's words split by the keep gate: per word the share of units
    that keep (rounded), words where most units keep vs rewrite, units that switch (range > 0.5
    over the words)."""
    ex = explain_text(model_t, REVIEW)
    found = keep_gate(cell)
    if found is None:
        return {}
    g, keep = found
    label = g if len(model_t.layers) == 1 else f"L{len(model_t.layers)}.{g}"
    v = ex.gates[label]  # (T, H)
    keeping = ((v >= 0.5) == bool(keep)).float().mean(dim=1)  # share of units keeping, per word
    rng = v.max(dim=0).values - v.min(dim=0).values
    return {"gate": label, "kept_words": int((keeping > 0.5).sum()),
            "rewritten_words": int((keeping <= 0.5).sum()), "words": len(ex.tokens),
            "keep_share_min": float(keeping.min()), "keep_share_max": float(keeping.max()),
            "switching_units": int((rng > 0.5).sum()), "units": int(v.shape[1]),
            "saturated_values": float(((v < 0.1) | (v > 0.9)).float().mean())}


def run_sentiment(out: Path, tiny: bool, axes: list[str] | None = None) -> list[dict]:
    """Train and measure the grid (only the rows of ``axes`` when given); writes
    ``OUT/sentiment[-AXES].json``, its table and figure."""
    rows: list[dict] = []
    name = "sentiment" + ("-" + "-".join(axes) if axes else "")
    grid = [("length", "mgu", 4, 0.0, [2, 3]), ("bias", "gru", 4, 2.0, [3])] if tiny else SENTIMENT
    grid = [g for g in grid if not axes or g[0] in axes]
    for axis, cell, hidden, bias, snaps in grid:
        sizes = BASE | {"hidden": hidden, "embed": hidden, "steps": max(snaps)}
        cfg = TrainConfig(cell=cell, **(sizes | ({"train_size": 200, "eval_size": 40}
                                                 if tiny else {})))
        for step, model, task, secs in fit(cfg, bias, snaps):
            acc = evaluate(model, task)
            tm = from_module(model, task.vocab.encode, tuple(task.classes), max_len=cfg.max_len,
                             source=f"{cell} {hidden}")
            data = Labelled(list(task.test_ids), task.test_y.tolist())
            sat = saturation(tm, data.ids, max_len=cfg.max_len)
            fid = fidelity(tm, data.ids, data.labels, max_len=cfg.max_len)
            between = [s["between"] for s in sat.summary().values()]
            row = {"axis": axis, "cell": cell, "hidden": hidden, "keep_bias": bias,
                   "steps": step, "seconds": secs, "accuracy": acc,
                   "baseline": task.baseline, "between": sum(between) / len(between),
                   "summary": sat.summary(), "exact": fid.exact.accuracy,
                   "rounded": fid.all_rounded.accuracy, "changed": fid.all_rounded.changed,
                   "review": review_split(tm, model.rnn.cell)}
            rows.append(row)
            print(f"{axis} {cell} h{hidden} bias {bias} step {step}: acc {acc:.3f}, between "
                  f"{row['between']:.1%}, rounded {row['rounded']:.3f} ({secs:.0f}s)",
                  flush=True)
            (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    (out / f"{name}.md").write_text(sentiment_table(rows))
    plot_sentiment(rows, out / f"{name}.png")
    return rows


def merge(out: Path) -> None:
    """Join the ``sentiment-*.json`` of split runs (``--only``) into one table and figure."""
    rows = [r for f in sorted(out.glob("sentiment-*.json")) for r in json.loads(f.read_text())]
    (out / "sentiment.json").write_text(json.dumps(rows, indent=1))
    (out / "sentiment.md").write_text(sentiment_table(rows))
    plot_sentiment(rows, out / "sentiment-saturation.png")


def sentiment_table(rows: list[dict]) -> str:
    lines = ["| varied | cell | units | keep bias | steps | test acc. | gate values in (0.1, 0.9) "
             "| acc. with gates 0/1 | predictions changed "
             "| review: words most units keep / rewrite | switching units |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rv = r["review"]
        split = f"{rv['kept_words']} / {rv['rewritten_words']}" if rv else "-"
        sw = f"{rv['switching_units']}/{rv['units']}" if rv else "-"
        lines.append(f"| {r['axis']} | {r['cell']} | {r['hidden']} | {r['keep_bias']:g} | "
                     f"{r['steps']} | {r['accuracy']:.1%} | {r['between']:.1%} | "
                     f"{r['rounded']:.1%} | {r['changed']:.1%} | {split} | {sw} |")
    return "\n".join(lines) + "\n"


def plot_sentiment(rows: list[dict], path: Path) -> None:
    """Share of gate values in between against the accuracy lost by rounding, one dot a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    marks = {"mgu": "o", "gru": "s", "lstm": "^"}
    for r in rows:
        ax.scatter(r["between"], r["exact"] - r["rounded"], marker=marks.get(r["cell"], "x"),
                   color="#d55e00" if r["keep_bias"] else "#0072b2", s=20 + r["steps"] / 40)
        ax.annotate(f"{r['cell']}{r['hidden']} {r['steps']}", (r["between"],
                    r["exact"] - r["rounded"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    ax.set_xlabel("gate values between 0.1 and 0.9 (test set)")
    ax.set_ylabel("accuracy lost when every gate is rounded to 0/1")
    ax.set_title("tweets: blue no keep bias, orange keep bias 2; size = steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["stdlib", "sentiment", "all"], default="all")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/gates"))
    ap.add_argument("--tiny", action="store_true", help="a smoke run: tiny sizes, seconds")
    ap.add_argument("--only", default="", help="sentiment rows to run, e.g. length,size (to "
                    "split the grid over processes); --merge joins their outputs")
    ap.add_argument("--merge", action="store_true", help="only join sentiment-*.json")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the trainer: small recurrent GEMMs are fastest on one thread
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        return merge(args.out)
    if args.part in ("stdlib", "all"):
        run_stdlib(args.out, args.tiny)
    if args.part in ("sentiment", "all"):
        run_sentiment(args.out, args.tiny, [a for a in args.only.split(",") if a] or None)


if __name__ == "__main__":
    main()
