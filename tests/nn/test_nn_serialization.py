"""nn.save / nn.load: .npz round trips, atomic writes, and every bad file rejected cleanly."""
import os
import zipfile

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import nn


def _model():
    ag.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _snapshot(module):
    return {k: v.numpy().copy() for k, v in module.state_dict().items()}


def _unchanged(module, before):
    after = _snapshot(module)
    return after.keys() == before.keys() and all(np.array_equal(before[k], after[k]) for k in before)


def test_round_trip_restores_parameters_and_buffers(tmp_path):
    src = _model()
    src(ag.randn(8, 3))  # moves the BatchNorm running statistics
    path = tmp_path / "model.npz"
    nn.save(src.state_dict(), path)
    loaded = nn.load(path)
    assert list(loaded) == list(src.state_dict())
    for k, v in loaded.items():
        assert isinstance(v, ag.Tensor) and str(v.device) == "cpu"
        assert v.dtype == src.state_dict()[k].dtype
    assert loaded["1.num_batches_tracked"].dtype == np.int64 and loaded["1.num_batches_tracked"].item() == 1
    dst = _model()
    with ag.no_grad():
        for p in dst.parameters():
            p.fill_(0.0)
    held = list(dst.parameters())
    dst.load_state_dict(loaded)
    assert [id(p) for p in dst.parameters()] == [id(p) for p in held]
    assert _unchanged(dst, _snapshot(src))
    x = ag.randn(5, 3)
    src.eval()
    dst.eval()
    np.testing.assert_array_equal(dst(x).numpy(), src(x).numpy())


def test_archive_keys_are_exactly_the_state_dict_names(tmp_path):
    path = tmp_path / "weights.npz"
    sd = _model().state_dict()
    nn.save(sd, path)
    with np.load(path, allow_pickle=False) as archive:
        assert archive.files == list(sd)
        np.testing.assert_array_equal(archive["0.weight"], sd["0.weight"].numpy())


def test_save_writes_exactly_the_given_path_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "ckpt.bin"
    nn.save({"file": ag.ones(2), "allow_pickle": ag.zeros(1)}, str(path))  # keys np.savez would choke on
    assert sorted(os.listdir(tmp_path)) == ["ckpt.bin"]
    assert list(nn.load(path)) == ["file", "allow_pickle"]


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    nn.save({"w": ag.ones(3)}, path)
    real_write = np.lib.format.write_array
    calls = []

    def crash_on_second_entry(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", crash_on_second_entry)
    with pytest.raises(OSError, match="disk full"):
        nn.save({"w": ag.zeros(3), "v": ag.zeros(2)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(nn.load(path)["w"].numpy(), 1.0)
    assert os.listdir(tmp_path) == ["model.npz"]  # the partial temp file was removed


def test_save_refuses_object_arrays_and_non_mappings(tmp_path):
    with pytest.raises(ValueError, match="object"):
        nn.save({"w": np.array([{"a": 1}], dtype=object)}, tmp_path / "x.npz")
    with pytest.raises(TypeError):
        nn.save([ag.ones(2)], tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def _write_object_npz(path):
    np.savez(path, weight=np.array([1.0, None], dtype=object))


def _write_truncated(path):
    nn.save(_model().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_corrupt_member(path):
    nn.save({"w": ag.ones(64)}, path)
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY")
    data[start + 200] ^= 0xFF  # flip a byte inside the stored array: the CRC no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "writer, problem",
    [
        (lambda p: p.write_text("just some text\n"), "not an .npz"),
        (lambda p: np.save(p, np.ones(3)), "single .npy"),
        (_write_object_npz, "object"),
        (_write_truncated, "truncated or corrupt"),
        (_write_corrupt_member, "truncated or corrupt"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 10), "truncated or corrupt"),
    ],
    ids=["text", "npy", "object", "truncated", "bad-crc", "zip-header-only"],
)
def test_bad_files_raise_value_error_naming_file_and_problem(tmp_path, writer, problem):
    path = tmp_path / "bad.npz"
    writer(path)
    path = path if path.exists() else tmp_path / "bad.npz.npy"
    model = _model()
    before = _snapshot(model)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(nn.load(path))
    assert str(path) in str(info.value) and problem in str(info.value)
    assert _unchanged(model, before)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "nope.npz")


def test_loading_a_mismatched_checkpoint_leaves_the_module_unchanged(tmp_path):
    model = _model()
    before = _snapshot(model)
    other = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2), nn.Linear(2, 2))
    path = tmp_path / "other.npz"
    nn.save(other.state_dict(), path)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(nn.load(path))
    msg = str(info.value)
    assert "'0.weight'" in msg and "(5, 3)" in msg and "(4, 3)" in msg
    assert "'1.running_mean'" in msg and "(5,)" in msg and "(4,)" in msg
    assert "unexpected" in msg and "'4.weight'" in msg
    assert _unchanged(model, before)
    sd = nn.load(path)
    for k in ["3.weight", "3.bias"]:
        del sd[k]
    with pytest.raises(ValueError, match="missing.*'3.weight'"):
        model.load_state_dict(sd)
    assert _unchanged(model, before)


def test_load_state_dict_converts_dtype_and_keeps_the_optimizer_view(tmp_path):
    model = _model().double()
    held = list(model.parameters())
    path = tmp_path / "f32.npz"
    nn.save(_model().state_dict(), path)  # float32 on disk
    model.load_state_dict(nn.load(path))
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert [id(p) for p in model.parameters()] == [id(p) for p in held]
    np.testing.assert_allclose(model[0].weight.numpy(), _model()[0].weight.numpy().astype(np.float64))


def test_archive_is_a_plain_zip_of_npy_members(tmp_path):
    path = tmp_path / "m.npz"
    nn.save({"a.b": ag.ones(2, 2)}, path)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["a.b.npy"]
