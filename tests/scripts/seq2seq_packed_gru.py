"""seq2seq GRU encoder/decoder with packed sequences (enforce_sorted=False)."""

import sys

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

if sys.argv[1] == "gatelab":
    from gatelab.nn import GRU
elif sys.argv[1] == "gen":
    import functools

    import gatelab.nn

    GRU = functools.partial(gatelab.nn.GRU, backend="generated")
else:
    from torch.nn import GRU
torch.manual_seed(0)
V, E, H, PAD, SOS = 20, 12, 16, 0, 1


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, E, padding_idx=PAD)
        self.rnn = GRU(E, H, num_layers=2, bidirectional=True, batch_first=True, dropout=0.0)
        self.fc = nn.Linear(2 * H, H)

    def forward(self, src, lens):
        packed = pack_padded_sequence(self.emb(src), lens, batch_first=True, enforce_sorted=False)
        out, hid = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        hid = torch.tanh(self.fc(torch.cat([hid[-2], hid[-1]], 1)))
        return out, hid


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, E)
        self.rnn = GRU(E + 2 * H, H, batch_first=True)
        self.out = nn.Linear(H, V)

    def forward(self, tok, hid, enc):
        ctx = enc.mean(1, keepdim=True)
        o, hid = self.rnn(torch.cat([self.emb(tok).unsqueeze(1), ctx], 2), hid.unsqueeze(0))
        return self.out(o.squeeze(1)), hid.squeeze(0)


enc, dec = Encoder().double(), Decoder().double()
torch.manual_seed(1)
params = list(enc.parameters()) + list(dec.parameters())
with torch.no_grad():
    for p in params:
        p.uniform_(-0.3, 0.3)
opt = torch.optim.SGD(params, lr=0.5)
losses = []
g = torch.Generator().manual_seed(2)
for _step in range(10):
    lens = torch.randint(2, 9, (6,), generator=g)
    src = torch.randint(3, V, (6, 8), generator=g)
    for i, l in enumerate(lens):
        src[i, l:] = PAD
    tgt = src.flip(1)
    enc_out, hid = enc(src, lens)
    tok = torch.full((6,), SOS)
    loss = 0
    for t in range(8):
        logits, hid = dec(tok, hid, enc_out)
        loss = loss + nn.functional.cross_entropy(
            logits, tgt[:, t], ignore_index=PAD, reduction="sum"
        )
        tok = tgt[:, t]
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(repr(losses))
