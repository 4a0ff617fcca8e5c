"""A small word-level language model training script, written for torch.nn.LSTM.

embedding -> 2-layer LSTM (dropout between layers) -> linear; truncated BPTT, gradient clipping,
the whole model saved with torch.save and reloaded with weights_only=True under a safe_globals
allowlist, flatten_parameters() after the load. The corpus is generated from a fixed random
Markov chain (no download). tests/test_dropin_script.py runs this file as it is, and again with
only the LSTM import line swapped for gatelab's.

Usage: python word_lm.py OUT_JSON BATCHES DROPOUT SEED
"""

import json
import sys

import torch
from torch import nn
from torch.nn import LSTM

VOCAB, EMB, HIDDEN, BATCH, BPTT = 40, 16, 32, 8, 12


class WordLM(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.emb = nn.Embedding(VOCAB, EMB)
        self.rnn = LSTM(EMB, HIDDEN, num_layers=2, dropout=dropout)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens, hidden):
        out, hidden = self.rnn(self.drop(self.emb(tokens)), hidden)
        return self.head(self.drop(out)), hidden


def corpus(n_tokens: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    trans = torch.softmax(3 * torch.randn(VOCAB, VOCAB, generator=g), dim=1)
    toks = [0]
    for _ in range(n_tokens - 1):
        toks.append(int(torch.multinomial(trans[toks[-1]], 1, generator=g)))
    return torch.tensor(toks)


def main(out_path: str, batches: int, dropout: float, seed: int) -> None:
    torch.manual_seed(seed)
    data = corpus(BATCH * (batches * BPTT + 1), seed).view(BATCH, -1).t().contiguous()
    model = WordLM(dropout)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    hidden = None
    losses = []
    for b in range(batches):
        x = data[b * BPTT:(b + 1) * BPTT]
        y = data[b * BPTT + 1:(b + 1) * BPTT + 1]
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden)
        opt.zero_grad()
        logits, hidden = model(x, hidden)
        loss = nn.functional.cross_entropy(logits.view(-1, VOCAB), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        losses.append(loss.item())
    torch.save(model, out_path + ".pt")
    with torch.serialization.safe_globals([WordLM, LSTM, nn.Embedding, nn.Linear, nn.Dropout]):
        loaded = torch.load(out_path + ".pt", weights_only=True)
    loaded.rnn.flatten_parameters()
    model.eval(), loaded.eval()
    with torch.no_grad():
        same = torch.equal(model(data[:BPTT], None)[0], loaded(data[:BPTT], None)[0])
    with open(out_path, "w") as f:
        json.dump({"losses": losses, "reload_equal": same, "rnn": type(loaded.rnn).__module__},
                  f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
