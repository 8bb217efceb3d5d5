"""Each example runs end to end at a tiny size; the digits example reaches its accuracy (slow)."""
import os

import pytest

from xpgrad.examples import custom_op, digits_mlp, linear_regression, logistic, text_lstm


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
