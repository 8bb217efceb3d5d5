"""Embedding + LSTM text classifier on a synthetic 3-class sentiment corpus.

Sentences are random filler words with at most one sentiment keyword; "not" right before a
keyword flips it, and "but" starts a second clause whose keyword wins. Labels: 0 negative,
1 neutral (no keyword), 2 positive. Word order matters (negation, contrast), so a bag of
words cannot solve it; the LSTM reads the sentence and a Linear layer classifies its last
hidden state.

    python -m xpgrad.examples.text_lstm [--epochs 6]
"""
from __future__ import annotations

import argparse

import numpy as np

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad import optim

POSITIVE = ["good", "great", "lovely", "fine", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "terrible"]
FILLER = ["the", "movie", "was", "plot", "actors", "really", "quite", "a", "story", "and", "it", "seemed",
          "music", "ending", "scenes", "very"]
PAD, NOT, BUT = "<pad>", "not", "but"
VOCAB = [PAD, NOT, BUT] + POSITIVE + NEGATIVE + FILLER
INDEX = {w: i for i, w in enumerate(VOCAB)}


def _clause(rng, length):
    """A clause and its polarity (-1, 0, +1)."""
    words = list(rng.choice(FILLER, size=length))
    kind = rng.integers(3)  # 0: none, 1: positive, 2: negative
    if kind == 0:
        return words, 0
    polarity = 1 if kind == 1 else -1
    word = rng.choice(POSITIVE if polarity > 0 else NEGATIVE)
    pos = int(rng.integers(1, length + 1))
    if rng.random() < 0.35:
        words[pos - 1:pos] = [NOT, word]
        polarity = -polarity
    else:
        words.insert(pos, word)
    return words, polarity


def make_corpus(n: int = 3000, max_len: int = 16, seed: int = 0):
    """Token ids (n, max_len), left-padded, and labels (n,)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, max_len), dtype=np.int64)
    y = np.zeros(n, dtype=np.int64)
    for i in range(n):
        words, polarity = _clause(rng, int(rng.integers(3, 6)))
        if rng.random() < 0.3:
            second, p2 = _clause(rng, int(rng.integers(2, 5)))
            words = words + [BUT] + second
            polarity = p2 if p2 != 0 else polarity
        words = words[-max_len:]
        x[i, max_len - len(words):] = [INDEX[w] for w in words]
        y[i] = polarity + 1
    return x, y


class TextClassifier(nn.Module):
    def __init__(self, vocab: int, embed: int = 32, hidden: int = 64, classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens):
        _, (h_n, _) = self.lstm(self.embedding(tokens))
        return self.head(h_n[-1])


def run(epochs: int = 6, n: int = 2000, seed: int = 0, device: str = "cpu", verbose: int = 0):
    x, y = make_corpus(n, seed=seed)
    cut = int(0.8 * n)
    ag.manual_seed(seed)
    model = TextClassifier(len(VOCAB)).to(device)
    history = nn.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2),
                     ag.tensor(x[:cut], device=device), ag.tensor(y[:cut], device=device),
                     epochs=epochs, batch_size=64, metrics=["accuracy"], seed=seed, verbose=verbose)
    test = nn.evaluate(model, nn.CrossEntropyLoss(), ag.tensor(x[cut:], device=device),
                       ag.tensor(y[cut:], device=device), metrics=["accuracy"])
    return history.history, test


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Embedding + LSTM sentiment classifier")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    history, test = run(args.epochs, device=args.device, verbose=2)
    print(f"test accuracy {test['accuracy']:.4f} (train accuracy {history['accuracy'][-1]:.4f})")


if __name__ == "__main__":
    main()
