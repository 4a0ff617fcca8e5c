"""word LM with tied weights (the word_language_model pattern): save the whole model, reload
it with weights_only=True under an allowlist of torch's classes."""

import os
import sys
import tempfile

import torch
import torch.nn as nn

if sys.argv[1] == "gatelab":
    from gatelab.nn import LSTM
elif sys.argv[1] == "gen":
    import functools

    import gatelab.nn

    LSTM = functools.partial(gatelab.nn.LSTM, backend="generated")
else:
    from torch.nn import LSTM
torch.manual_seed(0)
V, H = 50, 24


class RNNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.0)
        self.encoder = nn.Embedding(V, H)
        self.rnn = LSTM(H, H, 2, dropout=0.0)
        self.decoder = nn.Linear(H, V)
        self.decoder.weight = self.encoder.weight

    def forward(self, x, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return self.decoder(self.drop(out)), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return (w.new_zeros(2, bsz, H), w.new_zeros(2, bsz, H))


def repackage(h):
    return tuple(v.detach() for v in h)


model = RNNModel().double()
torch.manual_seed(1)
with torch.no_grad():
    for p in model.parameters():
        p.uniform_(-0.1, 0.1)
data = torch.randint(0, V, (200, 4), generator=torch.Generator().manual_seed(3))
crit = nn.CrossEntropyLoss()
lr = 5.0
hidden = model.init_hidden(4)
losses = []
model.train()
for i in range(0, 150, 15):
    x, y = data[i : i + 15], data[i + 1 : i + 16]
    hidden = repackage(hidden)
    model.zero_grad()
    out, hidden = model(x, hidden)
    loss = crit(out.view(-1, V), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-lr)
    losses.append(loss.item())
path = os.path.join(tempfile.mkdtemp(), "model.pt")
with open(path, "wb") as f:
    torch.save(model, f)
with open(path, "rb") as f:
    with torch.serialization.safe_globals(
        [RNNModel, nn.Dropout, nn.Embedding, nn.Linear, nn.LSTM, torch.nn.modules.sparse.Embedding]
    ):
        model2 = torch.load(f, weights_only=True)
    model2.rnn.flatten_parameters()
model2.eval()
with torch.no_grad():
    h = model2.init_hidden(4)
    out, _ = model2(data[150:165], h)
    ev = crit(out.view(-1, V), data[151:166].reshape(-1)).item()
print(repr(losses))
print(repr(ev))
