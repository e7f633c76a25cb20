#!/usr/bin/env python3
"""Trains a min-char-rnn character model in NumPy and saves it as the `.npz` tinyrnn imports.

The model and training are min-char-rnn's: one-hot characters, `h = tanh(Wxh x + Whh h + bh)`,
`p = softmax(Why h + by)`, cross-entropy over sequences of 25 characters, backpropagation through time,
gradients clipped to [-5, 5], Adagrad with learning rate 0.1. The text is this repository's
`docs/FORMAT.md` (project documentation, so the example needs no third-party corpus). Seeded, so a run
gives the same weights on the same NumPy.

Writes `chars.npz` (Wxh, Whh, Why, bh, by) and `vocab.json` ({"chars": ...}, in id order) next to itself.
Run: `python3 examples/chars/train_min_char_rnn.py` (numpy pinned in tests/fixtures/requirements.txt).
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEXT = (HERE / "../../docs/FORMAT.md").read_text(encoding="utf-8")
HIDDEN, SEQ, LR, ITERATIONS, SEED = 64, 25, 0.1, 30_000, 1

chars = sorted(set(TEXT))
index = {c: i for i, c in enumerate(chars)}
data = np.array([index[c] for c in TEXT])
V = len(chars)
rng = np.random.default_rng(SEED)
Wxh = rng.standard_normal((HIDDEN, V)) * 0.01
Whh = rng.standard_normal((HIDDEN, HIDDEN)) * 0.01
Why = rng.standard_normal((V, HIDDEN)) * 0.01
bh = np.zeros((HIDDEN, 1))
by = np.zeros((V, 1))
params = [Wxh, Whh, Why, bh, by]
memory = [np.zeros_like(p) for p in params]


def loss_and_gradients(inputs, targets, h_prev):
    xs, hs, ps = {}, {-1: h_prev}, {}
    loss = 0.0
    for t, (i, j) in enumerate(zip(inputs, targets)):
        xs[t] = np.zeros((V, 1))
        xs[t][i] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        e = np.exp(y - y.max())
        ps[t] = e / e.sum()
        loss -= np.log(ps[t][j, 0])
    grads = [np.zeros_like(p) for p in params]
    dWxh, dWhh, dWhy, dbh, dby = grads
    dh_next = np.zeros_like(h_prev)
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dh = Why.T @ dy + dh_next
        draw = (1 - hs[t] ** 2) * dh
        dbh += draw
        dWxh += draw @ xs[t].T
        dWhh += draw @ hs[t - 1].T
        dh_next = Whh.T @ draw
    for g in grads:
        np.clip(g, -5, 5, out=g)
    return loss, grads, hs[len(inputs) - 1]


smooth = -np.log(1.0 / V) * SEQ
position, h = 0, np.zeros((HIDDEN, 1))
for step in range(ITERATIONS):
    if position + SEQ + 1 >= len(data):
        position, h = 0, np.zeros((HIDDEN, 1))
    inputs = data[position : position + SEQ]
    targets = data[position + 1 : position + SEQ + 1]
    loss, grads, h = loss_and_gradients(inputs, targets, h)
    smooth = smooth * 0.999 + loss * 0.001
    for p, g, m in zip(params, grads, memory):
        m += g * g
        p -= LR * g / np.sqrt(m + 1e-8)
    position += SEQ
    if step % 5000 == 0:
        print(f"iteration {step}: smoothed loss {smooth:.2f}")
print(f"final smoothed loss {smooth:.2f} (uniform guessing: {-np.log(1.0 / V) * SEQ:.2f})")

np.savez(HERE / "chars.npz", **{n: p.astype(np.float32) for n, p in zip(["Wxh", "Whh", "Why", "bh", "by"], params)})
(HERE / "vocab.json").write_text(json.dumps({"chars": "".join(chars)}) + "\n", encoding="utf-8")
