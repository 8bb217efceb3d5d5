"""The benchmark suite: every workload runs at a tiny size, and every contender computes the same math.

The comparison is only honest if the hand-written references (and torch) do exactly the work
xpgrad does, so each workload's contenders are built from one setup in float64 and must agree
on the loss and on every gradient (or, for adam_step, on the updated parameters). No timing
assertions: timings on a shared CI machine mean nothing.

Benchmarks run on the CPU explicitly (the references are NumPy there; CuPy needs a real GPU).
"""
import json
import math

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad.benchmarks import run_benchmarks
from xpgrad.benchmarks.__main__ import main
from xpgrad.benchmarks.runner import Bench, Contender, format_table, run_bench
from xpgrad.benchmarks.workloads import WORKLOADS, Config, module
from xpgrad.benchmarks.workloads import _mlp, digits, memory

F64 = Config(device="cpu", size="tiny", dtype=np.float64, seed=3)
RTOL, ATOL = 1e-9, 1e-12   # float64, same formulas, summation order may differ


def _compare_contenders(impls: dict) -> None:
    assert "xpgrad" in impls and "numpy" in impls, sorted(impls)
    results = {name: impl.check() for name, impl in impls.items()}
    loss_x, arrays_x = results.pop("xpgrad")
    assert arrays_x, "xpgrad returned no gradients"
    for name, (loss, arrays) in results.items():
        assert sorted(arrays) == sorted(arrays_x), (name, sorted(arrays), sorted(arrays_x))
        if loss_x is not None:
            np.testing.assert_allclose(loss, loss_x, rtol=RTOL, atol=ATOL, err_msg=f"{name} loss")
        for key, value in arrays_x.items():
            assert arrays[key].shape == value.shape, (name, key)
            assert arrays[key].dtype == np.float64, (name, key, arrays[key].dtype)
            np.testing.assert_allclose(arrays[key], value, rtol=RTOL, atol=ATOL, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name", ["op_overhead", "mlp_small", "mlp_large", "adam_step", "lstm"])
def test_references_compute_what_xpgrad_computes(name):
    pytest.importorskip("torch")
    _compare_contenders(module(name).implementations(F64))


def test_memory_model_references_agree():
    pytest.importorskip("torch")
    size = memory.SIZES["tiny"]
    data = _mlp.setup(size["layers"], size["batch"], F64)
    _compare_contenders({name: cls(data, F64, memory.LR) for name, cls in _mlp.IMPLS.items()})


def test_mlp_references_agree_after_several_sgd_steps():
    """The updates match too, not only the first gradients: compare after three steps."""
    impls = module("mlp_small").implementations(Config(device="cpu", size="tiny", dtype=np.float64, compare=("numpy",)))
    for _ in range(3):
        for impl in impls.values():
            impl.step()
    _compare_contenders(impls)


def test_lstm_reference_gradient_is_a_true_gradient():
    """Independent of xpgrad: the hand-written BPTT agrees with finite differences of its own loss."""
    impl = module("lstm").implementations(Config(device="cpu", size="tiny", dtype=np.float64, compare=("numpy",)))["numpy"]
    _, grads = impl.check()
    rng = np.random.default_rng(0)
    for key in ("weight_hh_l0", "weight_ih_l0", "bias_ih_l0", "embedding"):
        param = impl.p[key]
        used = np.unique(impl.tokens) if key == "embedding" else None
        for _ in range(3):
            idx = list(np.unravel_index(rng.integers(param.size), param.shape))
            if used is not None:
                idx[0] = int(rng.choice(used))
            idx = tuple(idx)
            old, eps = param[idx], 1e-6
            param[idx] = old + eps
            up = float(impl.check()[0])
            param[idx] = old - eps
            down = float(impl.check()[0])
            param[idx] = old
            np.testing.assert_allclose(grads[key][idx], (up - down) / (2 * eps), rtol=1e-5, atol=1e-9, err_msg=key)


def test_digits_references_start_where_the_example_starts():
    data = digits.load_data(0)
    weights = digits.initial_weights(data[0][0].shape[1], 0)
    ag.manual_seed(0)
    from xpgrad.examples.digits_mlp import MLP

    model = MLP(data[0][0].shape[1])
    np.testing.assert_array_equal(weights[0][0], model.fc1.weight.numpy())
    np.testing.assert_array_equal(weights[1][1], model.fc2.bias.numpy())


def test_digits_local_stand_in_follows_the_reference_trajectory():
    """The stand-in for the example's train() and the reference reach the target in the same epoch."""
    cfg = Config(device="cpu", size="tiny", compare=("numpy",))
    data = digits.load_data(0)
    weights = digits.initial_weights(data[0][0].shape[1], 0)
    local, ref = digits.LocalXpgradDigits(data, weights, cfg), digits.NumpyDigits(data, weights, cfg)
    seconds = local.run(), ref.run()
    assert all(s is not None and s > 0 for s in seconds), seconds
    assert local.reached_epoch == ref.reached_epoch
    # same weights, batches and Adam steps: the trained weights agree to float32 rounding
    trained = [p.numpy() for p in local.state["model"].parameters()]
    model = ref.state["model"]
    expected = [a for pair in zip(model.weights, model.biases) for a in pair]
    assert len(trained) == len(expected)
    for got, want in zip(trained, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_every_workload_runs_tiny_through_the_function_api():
    # memory without torch here: each sample is a fresh interpreter, and importing torch there
    # costs seconds; the torch path of that subprocess runs in the full benchmark
    others = [w for w in WORKLOADS if w != "memory"]
    results = run_benchmarks(others[:4], size="tiny", repeat=1)
    results += run_benchmarks(["memory"], size="tiny", repeat=1, compare=("numpy",))
    results += run_benchmarks(others[4:], size="tiny", repeat=1)
    names = [r.name for r in results]
    expected = ["op_overhead", "op_overhead_nograd", "mlp_small", "mlp_large", "adam_step", "memory", "lstm"]
    assert names[:len(expected)] == expected and names[len(expected):] in ([], ["digits"]), names
    torch_installed = _has_torch()
    for r in results:
        assert not r.errors, (r.name, r.errors, r.info.get("tracebacks"))
        wanted = {"xpgrad", "numpy"} | ({"torch"} if torch_installed and r.name != "memory" else set())
        assert set(r.values) == wanted, (r.name, r.values)
        for name, value in r.values.items():
            assert math.isfinite(value) and value >= 0, (r.name, name, value)
            assert len(r.samples[name]) == 1
    mem = results[names.index("memory")]
    assert mem.info["theoretical_min"]["total_bytes"] > 0
    for name, runs in mem.info["details"].items():
        assert runs[0]["peak_bytes"] is not None, (name, runs)
        if name != "torch":
            assert runs[0]["tracemalloc_bytes"] > 0, (name, runs)
    if "digits" in names:
        reached = results[names.index("digits")].info["reached_epoch"]
        # the same weights, batches and math: every contender reaches the target in the same epoch
        epochs = {name: e for name, e in reached.items() if e != [None]}
        assert len(set(map(tuple, epochs.values()))) <= 1, reached
    table = format_table(results)
    assert "xpgrad/ref" in table and "lstm" in table


def test_cli_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = main(["--only", "op_overhead", "adam_step", "--size", "tiny", "--repeat", "2", "--compare", "numpy",
               "--json", str(out), "--plot", str(png), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "op_overhead_nograd" in printed and "adam_step" in printed
    payload = json.loads(out.read_text())
    machine = payload["machine"]
    for key in ("cpu", "cores_usable", "blas", "versions"):
        assert key in machine
    assert machine["versions"]["numpy"] == np.__version__
    rows = {r["name"]: r for r in payload["results"]}
    assert set(rows) == {"op_overhead", "op_overhead_nograd", "adam_step"}
    for row in rows.values():
        assert set(row["samples"]) == {"xpgrad", "numpy"}
        assert all(len(s) == 2 for s in row["samples"].values())
        assert row["ratio_to_ref"] == pytest.approx(row["median"]["xpgrad"] / row["median"]["numpy"])
        assert row["ratio_to_torch"] is None
    assert png.stat().st_size > 1000


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# -- the runner itself -------------------------------------------------------------------------------
def test_runner_interleaves_and_takes_medians():
    order = []
    values = {"xpgrad": iter([5.0, 1.0, 3.0, 100.0]), "numpy": iter([2.0, 2.0, 2.0, 2.0])}

    def make(name):
        def run():
            order.append(name)
            return next(values[name])
        return run

    bench = Bench("fake", "units", 10.0, [Contender("xpgrad", make("xpgrad")), Contender("numpy", make("numpy"))],
                  kind="value", repeat=4, warmup=0)
    r = run_bench(bench, progress=False)
    assert order == ["xpgrad", "numpy", "numpy", "xpgrad", "xpgrad", "numpy", "numpy", "xpgrad"]
    assert r.values == {"xpgrad": 40.0, "numpy": 20.0}      # medians (3+5)/2 and 2, times scale 10
    assert r.ratio("numpy") == 2.0 and r.ratio("torch") is None


def test_runner_records_a_failing_contender_and_measures_the_rest():
    def boom():
        raise ValueError("broken on purpose")

    calls = []
    bench = Bench("fake", "ms", 1e3, [Contender("xpgrad", boom), Contender("numpy", lambda: calls.append(1))],
                  repeat=3, warmup=1, min_sample_s=0.0)
    r = run_bench(bench, progress=False)
    assert "broken on purpose" in r.errors["xpgrad"]
    assert "xpgrad" not in r.values and len(r.samples["numpy"]) == 3
    assert len(calls) == 1 + 3       # one warm-up call, then one call per sample (min_sample_s=0)
    assert "error" in format_table([r])


def test_unreached_value_counts_as_not_available():
    bench = Bench("fake", "s", 1.0, [Contender("xpgrad", lambda: None), Contender("numpy", lambda: 1.0)],
                  kind="value", repeat=2, warmup=0)
    r = run_bench(bench, progress=False)
    assert math.isnan(r.values["xpgrad"]) and r.ratio("numpy") is None
    assert "n/a" in format_table([r])


def test_theoretical_minimum_counts_gradients_and_saved_activations():
    got = memory.theoretical_min_bytes([4, 3, 3, 2], batch=5, dtype=np.float32)
    params = (4 * 3 + 3) + (3 * 3 + 3) + (3 * 2 + 2)
    activations = 5 * 3 + 5 * 3 + 5 * 2           # two hidden ReLU outputs and the softmax probabilities
    assert got == {"gradient_bytes": 4 * params, "activation_bytes": 4 * activations,
                   "total_bytes": 4 * (params + activations)}


def test_workload_names_are_the_documented_ones():
    assert WORKLOADS == ("op_overhead", "mlp_small", "mlp_large", "adam_step", "memory", "lstm", "digits")
