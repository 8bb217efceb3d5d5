import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad import optim


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(2, 1, (n // 2, 2)), rng.normal(-2, 1, (n // 2, 2))]).astype(np.float32)
    y = np.concatenate([np.zeros(n // 2), np.ones(n // 2)]).astype(np.int64)
    order = rng.permutation(n)
    return ag.tensor(x[order]), ag.tensor(y[order])


def _model():
    ag.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))


def test_fit_returns_history_and_learns():
    x, y = _blobs()
    model = _model()
    history = nn.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.05), x, y, epochs=5,
                     batch_size=16, validation_split=0.25, metrics=["accuracy"], seed=0, verbose=0)
    assert history.epoch == [1, 2, 3, 4, 5]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    assert model.training  # fit leaves the model in train mode


def test_fit_is_reproducible_with_a_seed():
    x, y = _blobs()
    runs = []
    for _ in range(2):
        model = _model()
        h = nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y, epochs=2,
                   batch_size=10, seed=1, verbose=0)
        runs.append(h.history["loss"])
    assert runs[0] == runs[1]


def test_validation_split_holds_out_the_last_samples():
    x, y = _blobs(40)
    seen = []

    def loss_fn(out, target):
        seen.append(target.shape[0])
        return nn.functional.cross_entropy(out, target)

    model = _model()
    nn.fit(model, loss_fn, optim.SGD(model.parameters(), lr=0.1), x, y, epochs=1, batch_size=100,
           validation_split=0.25, verbose=0)
    assert seen == [30, 10]


def test_evaluate_and_predict_use_eval_mode_without_graph():
    x, y = _blobs(32)
    model = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    a = nn.predict(model, x, batch_size=8)
    b = nn.predict(model, x, batch_size=32)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)  # dropout off in eval
    assert a.grad_fn is None and a.shape == (32, 2)
    result = nn.evaluate(model, nn.CrossEntropyLoss(), x, y, metrics=["accuracy"])
    assert set(result) == {"loss", "accuracy"} and 0.0 <= result["accuracy"] <= 1.0
    assert model.training


def test_custom_metric_and_callbacks():
    x, y = _blobs(20)
    model = _model()
    calls = []

    def zero(y_pred, y_true):
        return (y_pred * 0).sum()

    nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y, epochs=2, metrics=[zero],
           callbacks=[lambda epoch, logs: calls.append((epoch, sorted(logs)))], verbose=0)
    assert calls == [(1, ["loss", "zero"]), (2, ["loss", "zero"])]


def test_fit_argument_errors():
    x, y = _blobs(20)
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="samples"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, x, y[:5], verbose=0)
    with pytest.raises(ValueError, match="metric"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, x, y, metrics=["f1"], verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        nn.fit(model, nn.CrossEntropyLoss(), opt, x, y, validation_split=1.5, verbose=0)


def test_verbose_two_prints_one_line_per_epoch(capsys):
    x, y = _blobs(20)
    model = _model()
    nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y, epochs=2, verbose=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "loss=" in lines[0]
