"""fANOVA importances of a finished study, with Optuna's implementation.

The finished trials become an Optuna study (``optuna.trial.create_trial``, each parameter with
the distribution it was drawn from); ``optuna.importance.FanovaImportanceEvaluator`` gives the
main effect of each hyperparameter: the fraction of the metric's variance over the space that it
explains alone (Hutter et al. 2014). For a pair ``(a, b)`` the interaction is
``(V_ab − V_a − V_b) / V``, with the marginal variances ``V_S`` read from the same fitted forest
(Optuna's ``_FanovaTree.get_marginal_variance``, which accepts any set of features); Optuna's
public API stops at main effects, and its trees are the maintained implementation of the
marginalisation, so nothing of fANOVA is re-implemented here.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .space import Dim


def distribution(dim: Dim):  # noqa: ANN201 - optuna.distributions.BaseDistribution
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if dim.kind == "choice":
        return CategoricalDistribution(list(dim.choices))
    if dim.kind == "int_loguniform":
        return IntDistribution(int(dim.low), int(dim.high), log=True)
    return FloatDistribution(dim.low, dim.high, log=dim.kind == "loguniform")


def importances(rows: list[dict[str, Any]], dims: dict[str, Any], higher: bool,
                seed: int = 0, pairs: bool = True, n_trees: int = 64) -> dict[str, Any]:
    """Main effects (and pairwise interactions) of ``dims`` on ``rows``' metric.

    ``rows``: ``{"params": {...}, "metric": float}``; ``dims``: name -> :class:`Dim` or an Optuna
    distribution (e.g. the categorical ``cell``). Returns ``{"n", "main": {name: fraction},
    "pairs": {"a × b": fraction}}``; raises ``ValueError`` with fewer than 4 trials or when the
    metric does not vary. ``n_trees``: trees of the random forest (Optuna's default, 64).
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import create_trial

    dists = {n: (distribution(d) if isinstance(d, Dim) else d) for n, d in dims.items()}
    dists = {n: d for n, d in dists.items() if not d.single()}
    rows = [r for r in rows if r["metric"] is not None and np.isfinite(r["metric"])]
    if len(rows) < 4 or not dists:
        raise ValueError(f"fANOVA needs at least 4 finished trials and a searched "
                         f"hyperparameter (got {len(rows)} trials)")
    if len({r["metric"] for r in rows}) < 2:
        raise ValueError("fANOVA: every trial reached the same metric, nothing to explain")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if higher else "minimize")
    for r in rows:
        study.add_trial(create_trial(params={n: r["params"][n] for n in dists},
                                     distributions=dists, value=float(r["metric"])))
    names = list(dists)
    ev = FanovaImportanceEvaluator(n_trees=n_trees, seed=seed)
    main = ev.evaluate(study, params=names)
    out: dict[str, Any] = {"n": len(rows), "main": {n: float(main[n]) for n in names},
                           "pairs": {}}
    if pairs and len(names) > 1:
        from optuna.importance._base import _get_distributions

        # the column order evaluate() used (Optuna orders the parameters its own way)
        columns = [n for n, d in _get_distributions(study, params=names).items()
                   if not d.single()]
        out["pairs"] = _pairs(ev, columns, out["main"])
    return out


def _pairs(ev: Any, names: list[str], main: dict[str, float]) -> dict[str, float]:
    """Pairwise interaction fractions from the forest ``ev`` has just fitted; ``names`` in the
    forest's column order (checked against the main effects Optuna returned)."""
    fan = getattr(ev, "_evaluator", None)
    trees = getattr(fan, "_trees", None)
    cols = getattr(fan, "_column_to_encoded_columns", None)
    if trees is None or cols is None:
        raise RuntimeError("this Optuna version does not expose its fANOVA trees: pairwise "
                           "interactions are not available (main effects are)")
    for i, n in enumerate(names):  # the same main effects from the trees: the order is right
        ours = np.mean([max(t.get_marginal_variance(cols[i]), 0.0) / t.variance
                        for t in trees if t.variance > 0])
        if not np.isclose(ours, main[n], rtol=1e-6, atol=1e-9):
            raise RuntimeError("fANOVA: cannot match Optuna's columns to the parameters; "
                               "pairwise interactions are not available with this Optuna")
    res = {}
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        fractions = []
        for tree in trees:
            total = tree.variance
            if total <= 0:
                continue
            va = max(tree.get_marginal_variance(cols[i]), 0.0)
            vb = max(tree.get_marginal_variance(cols[j]), 0.0)
            vab = max(tree.get_marginal_variance(np.concatenate([cols[i], cols[j]])), 0.0)
            fractions.append(max(vab - va - vb, 0.0) / total)
        res[f"{a} × {b}"] = float(np.mean(fractions)) if fractions else 0.0
    return dict(sorted(res.items(), key=lambda kv: -kv[1]))
