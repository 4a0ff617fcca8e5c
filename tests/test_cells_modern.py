"""The gated recurrences of 2023-2025 (tests/cells_modern/*.cell): gatelab's reference loop
against one step written independently from each paper in plain torch (float64, 1e-12), the
normalised text round trip, ``check`` and ``show``.

Each ``paper_*`` step takes the parameters by name (as gatelab draws them: a matrix ``W`` is
``(rows, in)``, applied as ``x @ W.T``) and the states ``(N, ...)``; matrix memories are
``(N, rows, cols)`` and written with explicit ``einsum``, not with gatelab's code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from gatelab.cell import cell_text, load_file, parse_cell
from gatelab.cell.evaluate import init_params, run_sequence, traceable_step
from gatelab.cli import app

CELLS = Path(__file__).parent / "cells_modern"
N, T, I, H = 3, 5, 4, 6


def lin(p, w, x, b=None):
    out = x @ p[w].T
    return out if b is None else out + p[b]


def outer(a, b):
    return torch.einsum("ni,nj->nij", a, b)


def apply(S, v):  # S v
    return torch.einsum("nij,nj->ni", S, v)


def read(v, S):  # Sᵀ v
    return torch.einsum("ni,nij->nj", v, S)


def paper_mlstm(p, x, s):  # Beck et al. 2024, eqs. 19-27 (no stabiliser, no 1/sqrt(d))
    q, k, v = lin(p, "W_q", x, "b_q"), lin(p, "W_k", x, "b_k"), lin(p, "W_v", x, "b_v")
    i = torch.exp(lin(p, "w_i", x, "b_i"))  # (N, 1): one scalar gate per step
    f = torch.sigmoid(lin(p, "w_f", x, "b_f"))
    o = torch.sigmoid(lin(p, "W_o", x, "b_o"))
    C = f[:, :, None] * s["C"] + i[:, :, None] * outer(v, k)
    n = f * s["n"] + i * k
    denom = torch.clamp((n * q).sum(-1, keepdim=True).abs(), min=1.0)
    return {"C": C, "n": n}, o * apply(C, q) / denom


def paper_deltanet(p, x, s):  # Yang et al. 2024, eq. 2 with L2-normalised keys
    k = F.normalize(lin(p, "W_k", x), dim=-1, eps=0.0)
    v, q = lin(p, "W_v", x), lin(p, "W_q", x)
    beta = torch.sigmoid(lin(p, "w_b", x, "b_b"))[:, :, None]
    S = s["S"]
    S = S - beta * outer(apply(S, k) - v, k)  # S (I - β k kᵀ) + β v kᵀ
    return {"S": S}, apply(S, q)


def paper_gla(p, x, s):  # Yang et al. 2023: S_t = G_t ⊙ S_{t-1} + k_tᵀ v_t, o = q S
    q, k, v = lin(p, "W_q", x), lin(p, "W_k", x), lin(p, "W_v", x)
    alpha = torch.sigmoid(lin(p, "W_a", x, "b_a"))
    G = alpha[:, :, None] * torch.ones_like(s["S"])  # αᵀ 1: one decay per key row
    S = G * s["S"] + outer(k, v)
    return {"S": S}, read(q, S)


def paper_retnet(p, x, s):  # Sun et al. 2023, eq. 6: S_n = γ S_{n-1} + K_nᵀ V_n, o = Q_n S_n
    q, k, v = lin(p, "W_q", x), lin(p, "W_k", x), lin(p, "W_v", x)
    S = (1 - 2.0 ** -5) * s["S"] + outer(k, v)
    return {"S": S}, read(q, S)


def paper_mamba(p, x, s):  # Gu & Dao 2023, Algorithm 2 (S6), Δ per channel, B̄ = Δ B
    delta = F.softplus(lin(p, "W_d", x, "b_d"))  # (N, H)
    B, C = lin(p, "W_B", x), lin(p, "W_C", x)  # (N, 4)
    A = -torch.exp(p["A_log"])  # (H, 4)
    dA = torch.exp(delta[:, :, None] * A[None])
    h = dA * s["h"] + (delta * x)[:, :, None] * B[:, None, :]
    return {"h": h}, torch.einsum("nhk,nk->nh", h, C) + p["D"] * x


def paper_lru(p, x, s):  # Orvieto et al. 2023, eq. (LRU) with complex arithmetic in torch
    lam = torch.exp(torch.complex(-torch.exp(p["nu"]), torch.exp(p["theta_log"])))
    gamma = torch.exp(p["gamma_log"])
    h = torch.complex(s["a"], s["b"])
    Bx = torch.complex(lin(p, "B_re", x), lin(p, "B_im", x))
    h = lam * h + gamma * Bx
    C = torch.complex(p["C_re"], p["C_im"])
    y = (h.to(C.dtype) @ C.T).real + lin(p, "D", x)
    return {"a": h.real, "b": h.imag}, y


def paper_rglru(p, x, s):  # De et al. 2024, eqs. 1-4 with c = 8
    r = torch.sigmoid(lin(p, "W_a", x, "b_a"))
    i = torch.sigmoid(lin(p, "W_x", x, "b_x"))
    log_a = -8.0 * r * F.softplus(-p["lam"])  # log σ(Λ)^(c r)
    a = torch.exp(log_a)
    h = a * s["h"] + torch.sqrt(1 - a ** 2) * (i * x)
    return {"h": h}, h


def paper_hgrn2(p, x, s):  # Qin et al. 2024, eq. 4: h_t = Diag(f) h_{t-1} + (1 - f) ⊗ i
    f = torch.sigmoid(lin(p, "W_f", x, "b_f"))
    i, o = lin(p, "W_i", x), lin(p, "W_o", x)
    S = torch.diag_embed(f) @ s["S"] + outer(1 - f, i)
    return {"S": S}, read(o, S)


def paper_slstm(p, x, s):  # Beck et al. 2024, eqs. 8-17 (stabilised exponential gates)
    h, c, n, m = s["h"], s["c"], s["n"], s["m"]
    it = lin(p, "W_i", x, "b_i") + h @ p["U_i"].T
    ft = lin(p, "W_f", x, "b_f") + h @ p["U_f"].T
    z = torch.tanh(lin(p, "W_z", x, "b_z") + h @ p["U_z"].T)
    o = torch.sigmoid(lin(p, "W_o", x, "b_o") + h @ p["U_o"].T)
    m_new = torch.maximum(ft + m, it)
    i, f = torch.exp(it - m_new), torch.exp(ft + m - m_new)
    c, n = f * c + i * z, f * n + i
    h = o * c / n
    return {"h": h, "c": c, "n": n, "m": m_new}, h


PAPER = {"mlstm": paper_mlstm, "deltanet": paper_deltanet, "gla": paper_gla,
         "retnet": paper_retnet, "mamba": paper_mamba, "lru": paper_lru, "rglru": paper_rglru,
         "hgrn2": paper_hgrn2, "slstm": paper_slstm}


def _setup(name: str, seed: int = 0):
    cell = load_file(CELLS / f"{name}.cell")
    g = torch.Generator().manual_seed(seed)
    size = H if cell.hidden_inputs else I
    params = init_params(cell, size, H, dtype=torch.float64, generator=g)
    x = torch.randn(T, N, size, dtype=torch.float64, generator=g)
    return cell, params, x


def test_every_fixture_has_a_paper_step():
    assert {f.stem for f in CELLS.glob("*.cell")} == set(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_loop_equals_paper(name, seed):
    cell, params, x = _setup(name, seed)
    outs, final = run_sequence(cell, x, params)
    s = {k: torch.zeros_like(v) for k, v in final.items()}
    for t in range(T):
        s, y = PAPER[name](params, x[t], s)
        torch.testing.assert_close(outs[t], y, rtol=0, atol=1e-12)
    for k in final:
        torch.testing.assert_close(final[k], s[k], rtol=0, atol=1e-12)
    assert outs.abs().max() > 1e-3  # the comparison is not between zeros


@pytest.mark.parametrize("name", sorted(PAPER))
def test_traceable_step_equals_reference(name):
    cell, params, x = _setup(name)
    outs, _ = run_sequence(cell, x, params)
    fn = traceable_step(cell)
    states = {s: torch.zeros_like(v) for s, v in run_sequence(cell, x[:1], params)[1].items()}
    for t in range(T):
        states, y = fn({**params, cell.inputs[0]: x[t], **states})
        torch.testing.assert_close(y, outs[t], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["mlstm", "mamba"])
def test_padding_carries_matrix_states(name):
    """Rows that are not live keep their (matrix) states: the loop's `live` mask broadcasts over
    the memory's two axes."""
    from gatelab.cell.evaluate import iterate

    cell, params, x = _setup(name)
    _, final = run_sequence(cell, x[:2], params)
    states = {s: torch.zeros_like(v) for s, v in final.items()}
    live = torch.ones(T, N, dtype=torch.bool)
    live[2:, 0] = False  # row 0 ends after two steps
    *_, last = iterate(cell, x, states, params, live=live)
    for s in cell.states:
        torch.testing.assert_close(last.states[s][0], final[s][0], rtol=0, atol=0)
        assert not torch.equal(last.states[s][1], final[s][1])


@pytest.mark.parametrize("name", sorted(PAPER))
def test_round_trip(name):
    cell = load_file(CELLS / f"{name}.cell")
    again = parse_cell(cell_text(cell), default_name=cell.name)
    for field in ("name", "inputs", "states", "output", "order", "gates", "lets", "nexts",
                  "dims"):  # the same cell (parameters may be met in another order)
        assert getattr(again, field) == getattr(cell, field), field
    assert set(again.params.values()) == set(cell.params.values())
    assert cell_text(again) == cell_text(cell)


runner = CliRunner()


@pytest.mark.parametrize("name", sorted(PAPER))
def test_check_and_show(name):
    path = str(CELLS / f"{name}.cell")
    res = runner.invoke(app, ["check", path])
    assert res.exit_code == 0, res.output
    assert ": ok" in res.output
    res = runner.invoke(app, ["show", path])
    assert res.exit_code == 0, res.output
    assert name in res.output
    res = runner.invoke(app, ["show", path, "--source"])
    assert parse_cell(res.output, default_name=name) == load_file(path)


# ---- the other commands refuse such cells in one line (until they support them) --------------
LATER = sorted(set(PAPER) - {"rglru"})  # rglru uses only the vector language


def test_zoo_and_vector_cells_have_no_reference_only_features():
    from gatelab.cell import load_cell, zoo_names
    from gatelab.cell.support import reference_only_features

    for name in zoo_names():
        assert reference_only_features(load_cell(name)) == ()
    assert reference_only_features(load_file(CELLS / "rglru.cell")) == ()
    for name in LATER:
        assert reference_only_features(load_file(CELLS / f"{name}.cell"))


@pytest.mark.parametrize("name", LATER)
def test_library_entries_refuse(name):
    import gatelab.nn as gnn
    from gatelab.analysis import analyze
    from gatelab.analysis.symbols import AnalysisError
    from gatelab.dynamics.flow import gradient_flow
    from gatelab.engine.layout import EngineError

    cell = load_file(CELLS / f"{name}.cell")
    with pytest.raises(AnalysisError, match="the analysis .* does not support .* yet"):
        analyze(cell)
    with pytest.raises(EngineError, match="the engine .* does not support .* yet"):
        gnn.RNN(cell, I, H, backend="reference")
    with pytest.raises(Exception, match="grad flow.* does not support"):
        gradient_flow(cell, steps=2, batch=2, hidden=4)


@pytest.mark.parametrize("args", [["analyze"], ["diagram"], ["engine"], ["grad", "flow"],
                                  ["train", "adding", "--steps", "1", "--cell"]],
                         ids=lambda a: a[0])
def test_commands_refuse_in_one_line(args, tmp_path):
    path = str(CELLS / "mlstm.cell")
    res = runner.invoke(app, [*args, path], catch_exceptions=False)
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "does not support" in errors[0] and "yet" in errors[0]
    assert "Traceback" not in res.output


def test_check_names_the_commands_it_cannot_run_yet():
    res = runner.invoke(app, ["check", str(CELLS / "mlstm.cell"), str(CELLS / "rglru.cell")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "mlstm.cell: ok" in text and "reference loop and show only" in text
    assert "train" in text and "diagram" in text
    assert "rglru.cell: ok (rglru: 1 state(s), 2 gate(s))" in text


@pytest.mark.parametrize("name", sorted(PAPER))
def test_reference_loop_is_differentiable(name):
    """The reference loop is plain torch: gradcheck through three steps in float64."""
    cell, params, x = _setup(name)
    names = list(params)

    def run(*tensors):
        p = dict(zip(names, tensors, strict=True))
        outs, _ = run_sequence(cell, x[:3, :2], p)
        return outs

    tensors = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(run, tensors, eps=1e-6, atol=1e-6)
