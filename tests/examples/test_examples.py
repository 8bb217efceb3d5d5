"""Each example runs end to end at a tiny size; the digits example reaches its accuracy (slow)."""
import os

import pytest

from xpgrad.examples import char_gpt, custom_op, digits_cnn, digits_mlp, linear_regression, logistic, text_lstm


def test_linear_regression_recovers_line():
    w, b, loss = linear_regression.run(steps=200)
    assert abs(w - 3) < 0.1 and abs(b - 2) < 0.1 and loss < 0.02


def test_logistic_classifier_separates_blobs():
    assert logistic.run(epochs=3) > 0.85


def test_text_lstm_runs_tiny():
    history, test = text_lstm.run(epochs=1, n=128)
    assert len(history["loss"]) == 1 and 0.0 <= test["accuracy"] <= 1.0


def test_custom_op_property_check_passes():
    custom_op.check_smooth_abs_gradients()


def test_digits_tiny_writes_outputs(tmp_path):
    r = digits_mlp.train(epochs=1, out_dir=str(tmp_path), verbose=0)
    assert os.path.getsize(tmp_path / "training_curve.png") > 1000
    assert os.path.exists(tmp_path / "weights.npz")
    assert 0 <= r["first_prediction"] <= 9


@pytest.mark.slow
def test_digits_reaches_96_percent():
    r = digits_mlp.train(epochs=40, verbose=0)
    assert r["test"]["accuracy"] >= 0.96


@pytest.mark.slow
def test_text_lstm_learns_negation_and_contrast():
    _, test = text_lstm.run()
    assert test["accuracy"] >= 0.95


def test_digits_cnn_runs_tiny():
    r = digits_cnn.train(epochs=1, width=4, verbose=0)
    assert len(r["history"]["loss"]) == 1 and "val_accuracy" in r["history"]
    assert 0.0 <= r["test"]["accuracy"] <= 1.0


def test_digits_cnn_main_prints_accuracy(capsys):
    digits_cnn.main(["--epochs", "1", "--seed", "1"])
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_digits_cnn_reaches_98_percent():
    r = digits_cnn.train(verbose=0)
    assert r["test"]["accuracy"] >= 0.98


def test_char_gpt_runs_tiny_and_samples():
    r = char_gpt.run(steps=3, batch_size=4, block_size=16, dim=16, heads=2, sample_length=20, log_every=2)
    assert [step for step, _, _ in r["log"]] == [1, 2, 3]
    train_loss, val_loss = r["log"][0][1:]
    # An untrained model is about as good as a uniform guess over the vocabulary.
    assert abs(train_loss - r["uniform_loss"]) < 1.0 and abs(val_loss - r["uniform_loss"]) < 1.0
    assert r["sample"].startswith("def ") and len(r["sample"]) == 24
    assert set(r["sample"]) <= set(char_gpt.load_corpus())


def test_char_gpt_sampling_is_seeded():
    r = char_gpt.run(steps=1, batch_size=2, block_size=8, dim=8, heads=2, sample_length=0)
    text = char_gpt.load_corpus()
    chars = sorted(set(text))
    a = char_gpt.sample(r["model"], chars, "x = ", 15, seed=3)
    b = char_gpt.sample(r["model"], chars, "x = ", 15, seed=3)
    assert a == b and len(a) == 19


def test_char_gpt_loss_falls():
    r = char_gpt.run(steps=30, batch_size=8, block_size=16, dim=32, heads=2, lr=1e-2, sample_length=0, log_every=30)
    assert r["log"][-1][1] < r["log"][0][1] - 1.0
