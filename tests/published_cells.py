"""Published cells written from their papers, as a user would write them (not in the zoo).

Shared by the tests of the diagram, the analysis and the gradient lab: every command must work
on them and every drawing must compute the cell.
"""

from __future__ import annotations

PUBLISHED = {
    "slstm": """\
# sLSTM (Beck et al. 2024, xLSTM), sigmoid gates, normaliser state n
name slstm
input x
state c, n, h
gate i = sigmoid(W_i @ x + R_i @ h + b_i)
gate f = sigmoid(W_f @ x + R_f @ h + b_f)
gate o = sigmoid(W_o @ x + R_o @ h + b_o)
let z = tanh(W_z @ x + R_z @ h + b_z)
let c_new = f * c + i * z
let n_new = f * n + i
next c = c_new
next n = n_new
next h = o * c_new / n_new
output h
""",
    "ligru": """\
# Light GRU (Ravanelli et al. 2018): no reset gate, ReLU candidate
name ligru
input x
state h
gate z = sigmoid(W_z @ x + U_z @ h + b_z)
let n = relu(W_h @ x + U_h @ h + b_h)
next h = z * h + (1 - z) * n
""",
    "hgrn": """\
# HGRN (Qin et al. 2023): forget gate with a learned lower bound lb
name hgrn
input x
state h
gate mu = sigmoid(W_f @ x + b_f)
let f = lb + (1 - lb) * mu
let c = tanh(W_c @ x + b_c)
next h = f * h + (1 - f) * c
""",
    "leaky": """\
# leaky integrator with a fixed leak
name leaky
input x
state h
next h = 0.9 * h + 0.1 * tanh(W @ x + U @ h + b)
""",
    "minimalrnn": """\
# MinimalRNN (Chen 2017)
name minimalrnn
input x
state h
let z = tanh(W_x @ x + b_x)
gate u = sigmoid(U_h @ h + U_z @ z + b_u)
next h = u * h + (1 - u) * z
""",
    "scrn": """\
# SCRN (Mikolov et al. 2015): slow context s with a fixed alpha
name scrn
input x
state s, h
let s_new = 0.95 * (B @ x) + 0.05 * s
next s = s_new
next h = sigmoid(P @ s_new + A @ x + R @ h)
output h
""",
    "cornn": """\
# coRNN (Rusch & Mishra 2021): a coupled oscillator, explicit Euler steps dt, gamma, eps
name cornn
input x
state y, z
let z_new = z + 0.042 * (tanh(W @ y + Wz @ z + V @ x + b) - 2.7 * y - 4.7 * z)
next z = z_new
next y = y + 0.042 * z_new
output y
""",
    "nlstm": """\
# Nested LSTM (Moniz & Krueger 2017): the memory is an inner LSTM
name nlstm
input x
state h, c, d
gate i = sigmoid(W_i @ x + U_i @ h + b_i)
gate f = sigmoid(W_f @ x + U_f @ h + b_f)
gate o = sigmoid(W_o @ x + U_o @ h + b_o)
let g = tanh(W_g @ x + U_g @ h + b_g)
let hin = f * c
let xin = i * g
gate ii = sigmoid(K_i @ xin + V_i @ hin + a_i)
gate ff = sigmoid(K_f @ xin + V_f @ hin + a_f)
gate oo = sigmoid(K_o @ xin + V_o @ hin + a_o)
let gg = tanh(K_g @ xin + V_g @ hin + a_g)
let d_new = ff * d + ii * gg
let c_new = oo * tanh(d_new)
next d = d_new
next c = c_new
next h = o * tanh(c_new)
output h
""",
    "rhn": """\
# Recurrent Highway Network (Zilly et al. 2017), depth 2, coupled carry gate
name rhn
input x
state s
let h1 = tanh(W_h @ x + R_h1 @ s + b_h1)
gate t1 = sigmoid(W_t @ x + R_t1 @ s + b_t1)
let s1 = t1 * h1 + (1 - t1) * s
let h2 = tanh(R_h2 @ s1 + b_h2)
gate t2 = sigmoid(R_t2 @ s1 + b_t2)
next s = t2 * h2 + (1 - t2) * s1
""",
    "cfc": """\
# CfC (Hasani et al. 2022): closed-form continuous-time cell, time step 1
name cfc
input x
state h
let ff1 = tanh(W_1 @ x + U_1 @ h + b_1)
let ff2 = tanh(W_2 @ x + U_2 @ h + b_2)
gate ti = sigmoid(-(W_a @ x + U_a @ h + b_a) - (W_b @ x + U_b @ h + b_b))
next h = ff1 * (1 - ti) + ti * ff2
""",
    "rwkv": """\
# RWKV-4 time mixing (Peng et al. 2023): token shift xprev, wkv numerator a and denominator b
name rwkv4
input x : hidden
state xprev, a, b
let mixk = mu_k * x + (1 - mu_k) * xprev
let mixv = mu_v * x + (1 - mu_v) * xprev
let mixr = mu_r * x + (1 - mu_r) * xprev
let k = W_k @ mixk
let v = W_v @ mixv
gate r = sigmoid(W_r @ mixr)
let w = exp(-exp(d))
let wkv = (a + exp(u + k) * v) / (b + exp(u + k))
next a = w * a + exp(k) * v
next b = w * b + exp(k)
next xprev = x
let y = W_o @ (r * wkv)
output y
""",
    "qrnn2": """\
# QRNN with filter width 2 (Bradbury et al. 2017)
name qrnn2
input x : hidden
state c, h, p
let z = tanh(W_z @ x + V_z @ p + b_z)
gate f = sigmoid(W_f @ x + V_f @ p + b_f)
gate o = sigmoid(W_o @ x + V_o @ p + b_o)
let c_new = f * c + (1 - f) * z
next c = c_new
next h = o * c_new
next p = x
output h
""",
    "lru": """\
# LRU (Orvieto et al. 2023), real diagonal: lambda = exp(-exp(nu)), gamma = sqrt(1 - lambda^2)
name lru
input u : hidden
state h
let lam = exp(-exp(nu))
next h = lam * h + sqrt(1 - lam ** 2) * (B @ u)
let y = C @ h + D * u
output h
""",
    "brc": """\
# Bistable recurrent cell (Vecoven et al. 2021): a = 1 + tanh(...) makes the state bistable
name brc
input x
state h
let a = 1 + tanh(U_a @ x + w_a * h)
gate c = sigmoid(U_c @ x + w_c * h)
next h = c * h + (1 - c) * tanh(U @ x + a * h)
""",
    "ssm": """\
# A selective diagonal state-space step (Gu & Dao 2023, Mamba), zero-order hold of A = -exp(a)
name ssm
input x
state h
let delta = softplus(W_d @ x + b_d)
let abar = exp(-delta * exp(a))
next h = abar * h + delta * (W_b @ x)
""",
}
