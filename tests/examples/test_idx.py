import gzip
import struct

import numpy as np
import pytest

from xpgrad.examples.idx import IDXError, load_mnist, read_idx


def _write_idx(path, array, type_code=0x08, gz=False):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_uint8_images(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = _write_idx(tmp_path / ("x.idx" + (".gz" if gz else "")), images, gz=gz)
    out = read_idx(str(path))
    np.testing.assert_array_equal(out, images)
    assert out.dtype == np.uint8


def test_other_dtypes(tmp_path):
    values = np.array([[1.5, -2.0], [3.25, 0.0]], dtype=np.float32)
    out = read_idx(_write_idx(tmp_path / "f.idx", values, type_code=0x0D))
    np.testing.assert_array_equal(out, values)
    ints = np.array([1, -70000, 5], dtype=np.int32)
    np.testing.assert_array_equal(read_idx(_write_idx(tmp_path / "i.idx", ints, type_code=0x0C)), ints)


def test_truncated_file_is_named(tmp_path):
    path = _write_idx(tmp_path / "t.idx", np.zeros((4, 4), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(IDXError, match="truncated"):
        read_idx(str(path))


def test_bad_magic_and_short_files(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(IDXError, match="magic"):
        read_idx(str(bad))
    short = tmp_path / "short.idx"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(IDXError, match="too short"):
        read_idx(str(short))
    header = tmp_path / "header.idx"
    header.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(IDXError, match="truncated header"):
        read_idx(str(header))


def test_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "c.idx.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(IDXError, match="cannot read"):
        read_idx(str(path))


def test_load_mnist_directory(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 3)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz=True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    (x_train, y_train), (x_test, y_test) = load_mnist(str(tmp_path))
    assert x_train.shape == (6, 784) and x_test.shape == (3, 784)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert y_train.dtype == np.int64


def test_load_mnist_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(str(tmp_path))
