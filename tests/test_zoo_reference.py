"""Each zoo file against an independent, hand-written step in plain torch.

The references below are written from the papers, not from the .cell files, so a typo in a zoo
file (a swapped gate, a missing bias, a wrong convention) makes its test fail.
"""

from __future__ import annotations

import pytest
import torch

from gatelab import load_cell
from gatelab.cell.evaluate import init_params, iterate, run_sequence, step

sig, tanh = torch.sigmoid, torch.tanh
N, I, H = 3, 4, 5


def lin(p, w, u, b, x, h, peep=None, cell=None):
    out = x @ p[w].T + h @ p[u].T + p[b]
    if peep is not None:
        out = out + p[peep] * cell
    return out


def ref_rnn(p, x, s):
    return {"h": tanh(lin(p, "W_h", "U_h", "b_h", x, s["h"]))}


def ref_lstm(p, x, s):
    h, c = s["h"], s["c"]
    i = sig(lin(p, "W_i", "U_i", "b_i", x, h))
    f = sig(lin(p, "W_f", "U_f", "b_f", x, h))
    o = sig(lin(p, "W_o", "U_o", "b_o", x, h))
    g = tanh(lin(p, "W_g", "U_g", "b_g", x, h))
    c2 = f * c + i * g
    return {"h": o * tanh(c2), "c": c2}


def greff(variant):
    """Greff et al. 2015: vanilla LSTM with peepholes, minus one part."""

    def ref(p, x, s):
        h, c = s["h"], s["c"]
        one = torch.ones_like(c)
        i = one if variant == "nig" else sig(lin(p, "W_i", "U_i", "b_i", x, h, "p_i", c))
        if variant == "nfg":
            f = one
        elif variant == "cifg":
            f = 1 - i
        else:
            f = sig(lin(p, "W_f", "U_f", "b_f", x, h, "p_f", c))
        pre = lin(p, "W_g", "U_g", "b_g", x, h)
        g = pre if variant == "niaf" else tanh(pre)
        c2 = f * c + i * g
        o = one if variant == "nog" else sig(lin(p, "W_o", "U_o", "b_o", x, h, "p_o", c2))
        h2 = o * c2 if variant == "noaf" else o * tanh(c2)
        return {"h": h2, "c": c2}

    return ref


def ref_fgr(p, x, s):
    h, c = s["h"], s["c"]
    prev = {"i": s["pi"], "f": s["pf"], "o": s["po"]}

    def rec(gate):
        return sum(prev[k] @ p[f"R_{k}{gate}"].T for k in "ifo")

    i = sig(lin(p, "W_i", "U_i", "b_i", x, h, "p_i", c) + rec("i"))
    f = sig(lin(p, "W_f", "U_f", "b_f", x, h, "p_f", c) + rec("f"))
    g = tanh(lin(p, "W_g", "U_g", "b_g", x, h))
    c2 = f * c + i * g
    o = sig(lin(p, "W_o", "U_o", "b_o", x, h, "p_o", c2) + rec("o"))
    return {"h": o * tanh(c2), "c": c2, "pi": i, "pf": f, "po": o}


def ref_gru(convention):
    def ref(p, x, s):
        h = s["h"]
        z = sig(lin(p, "W_z", "U_z", "b_z", x, h))
        r = sig(lin(p, "W_r", "U_r", "b_r", x, h))
        if convention == "torch":  # reset applied after the recurrent matmul, own bias b_hn
            n = tanh(x @ p["W_n"].T + p["b_in"] + r * (h @ p["U_n"].T + p["b_hn"]))
            return {"h": (1 - z) * n + z * h}
        n = tanh(x @ p["W_n"].T + (r * h) @ p["U_n"].T + p["b_n"])
        if convention == "chung":
            return {"h": (1 - z) * h + z * n}
        return {"h": z * h + (1 - z) * n}  # the article's

    return ref


def ref_mgu(variant):
    def ref(p, x, s):
        h = s["h"]
        if variant == "mgu":
            f = sig(lin(p, "W_f", "U_f", "b_f", x, h))
        elif variant == "mgu1":
            f = sig(h @ p["U_f"].T + p["b_f"])
        elif variant == "mgu2":
            f = sig(h @ p["U_f"].T)
        else:
            f = sig(p["b_f"]).expand_as(h)
        n = tanh(x @ p["W_n"].T + (f * h) @ p["U_n"].T + p["b_n"])
        return {"h": (1 - f) * h + f * n}

    return ref


def ref_mingru(p, x, s):
    z = sig(x @ p["W_z"].T + p["b_z"])
    n = x @ p["W_n"].T + p["b_n"]
    return {"h": (1 - z) * s["h"] + z * n}


def ref_minlstm(p, x, s):
    f = sig(x @ p["W_f"].T + p["b_f"])
    i = sig(x @ p["W_i"].T + p["b_i"])
    n = x @ p["W_n"].T + p["b_n"]
    return {"h": f / (f + i) * s["h"] + i / (f + i) * n}


def ref_janet(p, x, s):  # van der Westhuizen & Lasenby 2018, beta = 1
    c = s["c"]
    pre = lin(p, "W_f", "U_f", "b_f", x, c)
    n = tanh(lin(p, "W_c", "U_c", "b_c", x, c))
    return {"c": sig(pre) * c + (1 - sig(pre - 1)) * n}


def ref_sru(p, x, s):  # Lei et al. 2017: highway term (1 - r) x
    f = sig(x @ p["W_f"].T + p["b_f"])
    r = sig(x @ p["W_r"].T + p["b_r"])
    c = f * s["c"] + (1 - f) * (x @ p["W"].T)
    return {"c": c, "h": r * tanh(c) + (1 - r) * x}


def ref_qrnn(p, x, s):  # Bradbury et al. 2017, fo-pooling, width 1
    z = tanh(x @ p["W_z"].T + p["b_z"])
    f = sig(x @ p["W_f"].T + p["b_f"])
    o = sig(x @ p["W_o"].T + p["b_o"])
    c = f * s["c"] + (1 - f) * z
    return {"c": c, "h": o * c}


def ref_indrnn(p, x, s):  # Li et al. 2018
    return {"h": torch.relu(x @ p["W"].T + p["u"] * s["h"] + p["b"])}


def ref_ugrnn(p, x, s):  # Collins et al. 2017
    h = s["h"]
    c = tanh(lin(p, "W_c", "U_c", "b_c", x, h))
    g = sig(lin(p, "W_g", "U_g", "b_g", x, h))
    return {"h": g * h + (1 - g) * c}


def ref_mut(variant):  # Jozefowicz et al. 2015
    def ref(p, x, s):
        h = s["h"]
        if variant == 1:
            z = sig(x @ p["W_xz"].T + p["b_z"])
            r = sig(lin(p, "W_xr", "W_hr", "b_r", x, h))
            inp = tanh(x)
        elif variant == 2:
            z = sig(lin(p, "W_xz", "W_hz", "b_z", x, h))
            r = sig(x + h @ p["W_hr"].T + p["b_r"])
            inp = x @ p["W_xh"].T
        else:
            z = sig(x @ p["W_xz"].T + tanh(h) @ p["W_hz"].T + p["b_z"])
            r = sig(lin(p, "W_xr", "W_hr", "b_r", x, h))
            inp = x @ p["W_xh"].T
        return {"h": tanh((r * h) @ p["W_hh"].T + inp + p["b_h"]) * z + h * (1 - z)}

    return ref


def ref_delta(p, x, s):  # Ororbia et al. 2017, late integration, outer function the identity
    h = s["h"]
    vh, wx = h @ p["V"].T, x @ p["W"].T
    z = tanh(p["alpha"] * vh * wx + p["beta1"] * vh + p["beta2"] * wx + p["b"])
    r = sig(wx + p["b_r"])
    return {"h": (1 - r) * z + r * h}


def ref_lstm_ln(p, x, s):  # Ba et al. 2016, normalised per gate block, gains, shifts in b
    def ln(v):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(var + 1e-5)

    h, c = s["h"], s["c"]

    def pre(k):
        return (p[f"g_x{k}"] * ln(x @ p[f"W_{k}"].T) + p[f"g_h{k}"] * ln(h @ p[f"U_{k}"].T)
                + p[f"b_{k}"])

    i, f, o, n = sig(pre("i")), sig(pre("f")), sig(pre("o")), tanh(pre("n"))
    c2 = f * c + i * n
    return {"c": c2, "h": o * tanh(p["g_c"] * ln(c2) + p["b_c"])}


REFERENCES = {
    "lstm-ln": ref_lstm_ln,
    "janet": ref_janet, "sru": ref_sru, "qrnn": ref_qrnn, "indrnn": ref_indrnn,
    "ugrnn": ref_ugrnn, "mut1": ref_mut(1), "mut2": ref_mut(2), "mut3": ref_mut(3),
    "delta-rnn": ref_delta,
    "rnn": ref_rnn, "lstm": ref_lstm, "lstm-peephole": greff("vanilla"), "nig": greff("nig"),
    "nfg": greff("nfg"), "nog": greff("nog"), "niaf": greff("niaf"), "noaf": greff("noaf"),
    "cifg": greff("cifg"), "fgr": ref_fgr, "gru": ref_gru("article"),
    "gru-torch": ref_gru("torch"), "gru-chung": ref_gru("chung"), "mgu": ref_mgu("mgu"),
    "mgu1": ref_mgu("mgu1"), "mgu2": ref_mgu("mgu2"), "mgu3": ref_mgu("mgu3"),
    "mingru": ref_mingru, "minlstm": ref_minlstm,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_zoo_cell_matches_hand_written_reference(name):
    cell = load_cell(name)
    g = torch.Generator().manual_seed(0)
    i = H if cell.hidden_inputs else I  # `input x : hidden` (highway terms)
    params = init_params(cell, i, H, dtype=torch.float64, generator=g)
    params = {k: v * 3 for k, v in params.items()}  # larger weights: differences show
    x = torch.randn(N, i, generator=g, dtype=torch.float64)
    states = {s: torch.randn(N, H, generator=g, dtype=torch.float64) for s in cell.states}
    got = step(cell, {"x": x}, states, params).states
    want = REFERENCES[name](params, x, states)
    assert set(got) == set(want)
    for s in want:
        assert torch.allclose(got[s], want[s], atol=1e-12), (name, s)


def test_every_zoo_cell_has_a_reference():
    from gatelab import zoo_names

    assert set(zoo_names()) == set(REFERENCES)


def test_iterate_carries_state_over_padding_and_matches_run_sequence():
    cell = load_cell("gru")
    g = torch.Generator().manual_seed(3)
    p = init_params(cell, I, H, generator=g)
    x = torch.randn(6, N, I, generator=g)
    lengths = torch.tensor([6, 2, 4])
    live = torch.arange(6).unsqueeze(1) < lengths
    zeros = {"h": torch.zeros(N, H)}
    trail = [r.states["h"] for r in iterate(cell, x, zeros, p, live=live)]
    for n, length in enumerate(lengths.tolist()):
        # after its end a row keeps the state it had at its last real step
        for t in range(length, 6):
            torch.testing.assert_close(trail[t][n], trail[length - 1][n], rtol=0, atol=0)
    # without padding, iterate and run_sequence agree with the reference ``ref_gru``
    outs, final = run_sequence(cell, x, p)
    s = zeros
    for t in range(6):
        s = ref_gru("article")(p, x[t], s)
        torch.testing.assert_close(outs[t], s["h"])
    torch.testing.assert_close(final["h"], s["h"])
