"""char-RNN with an LSTMCell loop (as in many tutorials); run with torch's or gatelab's classes."""

import sys

import torch
import torch.nn as nn

if sys.argv[1] == "gatelab":
    from gatelab.nn import LSTMCell
elif sys.argv[1] == "gen":
    import functools

    import gatelab.nn

    LSTMCell = functools.partial(gatelab.nn.LSTMCell, backend="generated")
else:
    from torch.nn import LSTMCell
torch.manual_seed(0)
text = "the quick brown fox jumps over the lazy dog. " * 20
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text])
V, H = len(chars), 32


class CharRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.cell = LSTMCell(16, H)
        self.out = nn.Linear(H, V)

    def forward(self, x, state=None):
        outs = []
        for t in range(x.size(1)):
            state = self.cell(self.emb(x[:, t]), state)
            outs.append(self.out(state[0]))
        return torch.stack(outs, 1), state


model = CharRNN().double()
torch.manual_seed(1)
with torch.no_grad():
    for p in model.parameters():
        p.uniform_(-0.2, 0.2)
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
losses = []
for step in range(15):
    i = (step * 37) % (len(data) - 41)
    x = data[i : i + 40].view(4, 10)
    y = data[i + 1 : i + 41].view(4, 10)
    logits, _ = model(x)
    loss = nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    losses.append(loss.item())
# sampling with an explicit (h, c) and unbatched input
with torch.no_grad():
    h = (torch.zeros(H, dtype=torch.float64), torch.zeros(H, dtype=torch.float64))
    c = data[0]
    s = []
    for _ in range(20):
        h = model.cell(model.emb(c), h)
        c = model.out(h[0]).argmax()
        s.append(chars[c])
print(repr(losses))
print("".join(s))
