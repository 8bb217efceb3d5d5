"""A tiny character-level GPT trained on Python's own standard library.

Corpus: the source text of a few standard-library modules (``textwrap``, ``fnmatch``,
``string`` by default), read with ``inspect.getsource``, so it exists on every Python
install with no download. The last 10% of the characters are held out for validation.

Model: token + position embeddings, then 2 pre-LayerNorm transformer blocks, each causal
multi-head self-attention (``F.scaled_dot_product_attention(is_causal=True)``) followed by a
GELU MLP (its tanh form, cheaper on the CPU than the exact erf), both with residual connections; a final LayerNorm and a Linear head give next-character
logits. Trains with AdamW on random windows of the corpus, prints the training and validation
loss as it falls, then samples text with ``ag.multinomial`` from a seeded ``ag.Generator``.

    python -m xpgrad.examples.char_gpt [--steps 600] [--seed 0] [--sample 300] [--device cuda]
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import math
import time

import numpy as np

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad import optim
from xpgrad.nn import functional as F

MODULES = ("textwrap", "fnmatch", "string")


def load_corpus(modules=MODULES) -> str:
    """The concatenated source text of the named standard-library modules."""
    return "\n\n".join(inspect.getsource(importlib.import_module(name)) for name in modules)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"CausalSelfAttention: dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        # (B, T, 3C) -> (3, B, heads, T, C / heads)
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class CharGPT(nn.Module):
    def __init__(self, vocab: int, block_size: int = 48, dim: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(block_size, dim)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"CharGPT: sequence length {t} exceeds block_size {self.block_size}")
        x = self.tok(idx) + self.pos(ag.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def _batch(data: np.ndarray, rng, batch_size: int, block_size: int, device):
    starts = rng.integers(0, len(data) - block_size - 1, size=batch_size)
    x = np.stack([data[s:s + block_size] for s in starts])
    y = np.stack([data[s + 1:s + block_size + 1] for s in starts])
    return ag.tensor(x, device=device), ag.tensor(y, device=device)


def _loss(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def sample(model, chars: list[str], prompt: str, length: int, seed: int = 0, temperature: float = 0.8,
           device="cpu") -> str:
    """``prompt`` continued by ``length`` characters drawn from the model's next-character distribution."""
    index = {c: i for i, c in enumerate(chars)}
    ids = [index[c] for c in prompt if c in index] or [0]
    gen = ag.Generator(seed)
    model.eval()
    with ag.no_grad():
        for _ in range(length):
            context = ag.tensor(np.array([ids[-model.block_size:]], dtype=np.int64), device=device)
            logits = model(context)[0, -1] / temperature
            ids.append(int(ag.multinomial(F.softmax(logits, dim=-1), 1, generator=gen).item()))
    model.train()
    return "".join(chars[i] for i in ids)


def run(steps: int = 600, batch_size: int = 32, block_size: int = 48, dim: int = 64, heads: int = 4,
        lr: float = 4e-3, seed: int = 0, sample_length: int = 300, log_every: int = 100, device: str = "cpu",
        verbose: bool = False):
    """Train, log (step, train loss, val loss) and sample; returns a dict with the log, sample and time."""
    text = load_corpus()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = np.array([index[c] for c in text], dtype=np.int64)
    cut = int(0.9 * len(data))
    train_data, val_data = data[:cut], data[cut:]
    ag.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CharGPT(len(chars), block_size, dim, heads).to(device)
    optimizer = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    x_val, y_val = _batch(val_data, np.random.default_rng(seed + 1), 64, block_size, device)
    log = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x, y = _batch(train_data, rng, batch_size, block_size, device)
        optimizer.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step == 1 or step % log_every == 0 or step == steps:
            model.eval()
            with ag.no_grad():
                val = _loss(model, x_val, y_val).item()
            model.train()
            log.append((step, loss.item(), val))
            if verbose:
                print(f"step {step:4d}: train loss {log[-1][1]:.3f}, val loss {val:.3f}", flush=True)
    seconds = time.perf_counter() - start
    text_out = sample(model, chars, "def ", sample_length, seed=seed, device=device) if sample_length else ""
    return {"log": log, "sample": text_out, "seconds": seconds, "vocab": len(chars), "corpus_chars": len(text),
            "uniform_loss": math.log(len(chars)), "model": model}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=300, help="number of characters to sample")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    text = load_corpus()
    print(f"corpus: {len(text)} characters of {', '.join(MODULES)} ({len(set(text))} distinct)")
    r = run(args.steps, seed=args.seed, sample_length=args.sample, device=args.device, verbose=True)
    print(f"trained {args.steps} steps in {r['seconds']:.1f} s (uniform guess: loss {r['uniform_loss']:.3f})")
    print("sample:")
    print(r["sample"])


if __name__ == "__main__":
    main()
