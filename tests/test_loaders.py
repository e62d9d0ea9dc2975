"""Image files (IDX, npz): written here byte by byte, loaded back, checked against hand values."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from wgan_cli import data
from wgan_cli.data import DATASETS, FILE_DATASETS, MIN_IMAGES, load, split_indices
from wgan_cli.errors import WganError

N, H, W = 12, 3, 4  # non-square, so a transposed reshape would show


def idx_bytes(x: np.ndarray, type_code: int = 0x08, ndim: int | None = None) -> bytes:
    """The IDX encoding of x: magic 00 00 TT ND, big-endian uint32 dims, big-endian data."""
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    nd = x.ndim if ndim is None else ndim
    header = bytes([0, 0, type_code, nd]) + struct.pack(f">{x.ndim}I", *x.shape)
    return header + x.astype(dtypes[type_code]).tobytes()


def write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
    return path


def pixels() -> np.ndarray:
    """N x H x W uint8 images holding 0 and 255 (the range ends) and every value in between."""
    return (np.arange(N * H * W) * 255 // (N * H * W - 1)).astype(np.uint8).reshape(N, H, W)


def check_split(arrays: dict[str, np.ndarray], expected_flat: np.ndarray) -> None:
    """train/heldout are the documented split of the expected (N, D) rows, exactly."""
    n = expected_flat.shape[0]
    train_idx, heldout_idx = split_indices(n)
    assert heldout_idx.size == math.ceil(0.2 * n) and train_idx.size == n - heldout_idx.size
    np.testing.assert_array_equal(
        heldout_idx, np.sort(np.random.default_rng(0).permutation(n)[: math.ceil(0.2 * n)])
    )
    for name, idx in (("train", train_idx), ("heldout", heldout_idx)):
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], expected_flat[idx])


def unsplit(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The (N, D) rows in file order, put back together from train and heldout."""
    n = arrays["train"].shape[0] + arrays["heldout"].shape[0]
    train_idx, heldout_idx = split_indices(n)
    full = np.empty((n, arrays["train"].shape[1]), np.float32)
    full[train_idx], full[heldout_idx] = arrays["train"], arrays["heldout"]
    return full


def test_file_datasets_are_registered() -> None:
    assert set(FILE_DATASETS) == {"idx", "npz"} and set(FILE_DATASETS) <= set(DATASETS)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("suffix", ["", ".gz", ".idx3-ubyte"])
def test_idx_uint8_loads_exactly(tmp_path: Path, gz: bool, suffix: str) -> None:
    # gzip is told by its magic bytes, so a gzipped file without .gz (and a plain one with it)
    # loads the same.
    x = pixels()
    path = write(tmp_path / f"images{suffix}", idx_bytes(x), gz)
    spec, arrays = load("idx", str(path))
    assert spec.name == "idx" and spec.dim == H * W and spec.image_shape == (H, W, 1)
    assert spec.finite and spec.bounded and spec.modes is None
    hash(spec)
    flat = x.reshape(N, H * W)
    # uint8: x / 127.5 - 1, computed in float32.
    expected = flat.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    check_split(arrays, expected)
    # Hand values: 0 -> -1, 255 -> 1, 51 -> 51 / 127.5 - 1 = -0.6.
    full = unsplit(arrays)
    assert set(np.unique(x)) >= {0, 51, 255}
    assert np.all(full[flat == 0] == -1.0) and np.all(full[flat == 255] == 1.0)
    np.testing.assert_allclose(full[flat == 51], -0.6, atol=1e-7)


def test_idx_image_orientation_is_row_major(tmp_path: Path) -> None:
    x = np.zeros((N, H, W), np.uint8)
    x[:, 0, W - 1] = 255  # top-right pixel
    _, arrays = load("idx", write(tmp_path / "img", idx_bytes(x)))
    img = arrays["train"][0].reshape(H, W)
    assert img[0, W - 1] == 1.0 and (img == 1.0).sum() == 1


@pytest.mark.parametrize(
    ("code", "values", "expected"),
    [
        (0x09, [-128, 0, 127], [-1.0, 128 / 127.5 - 1, 1.0]),  # int8: (x + 128) / 127.5 - 1
        (0x0B, [-32768, 0, 32767], [-1.0, 32768 / 32767.5 - 1, 1.0]),  # int16 range
        (0x0D, [2.0, 3.0, 6.0], [-1.0, -0.5, 1.0]),  # float: data min/max -> [-1, 1]
        (0x0E, [-4.0, 0.0, 4.0], [-1.0, 0.0, 1.0]),
    ],
)
def test_idx_other_element_types(tmp_path: Path, code: int, values: list, expected: list) -> None:
    x = np.resize(np.array(values), N * 2 * 2).reshape(N, 2, 2)
    _, arrays = load("idx", write(tmp_path / "img", idx_bytes(x, code), gz=True))
    want = np.resize(np.array(expected), N * 4).reshape(N, 4).astype(np.float32)
    train_idx, heldout_idx = split_indices(N)
    np.testing.assert_allclose(arrays["train"], want[train_idx], atol=1e-6)
    np.testing.assert_allclose(arrays["heldout"], want[heldout_idx], atol=1e-6)


def test_npz_uint8_3d(tmp_path: Path) -> None:
    x = pixels()
    path = tmp_path / "images.npz"
    np.savez(path, x=x)
    spec, arrays = load("npz", path)
    assert spec.name == "npz" and spec.image_shape == (H, W, 1) and spec.dim == H * W
    check_split(arrays, x.reshape(N, -1).astype(np.float32) / np.float32(127.5) - 1)


def test_npz_float_rgb_scaled_by_data_range(tmp_path: Path) -> None:
    # Values 10 .. 10 + 0.5 (n - 1): min 10 -> -1, max -> 1, linear between.
    x = (10.0 + 0.5 * np.arange(N * H * W * 3)).reshape(N, H, W, 3).astype(np.float32)
    path = tmp_path / "rgb.npz"
    np.savez_compressed(path, x=x, y=np.arange(N))  # compressed and with extra arrays: fine
    spec, arrays = load("npz", path)
    assert spec.image_shape == (H, W, 3) and spec.dim == H * W * 3
    lo, hi = 10.0, 10.0 + 0.5 * (x.size - 1)
    expected = ((x.astype(np.float64) - lo) / (hi - lo) * 2 - 1).reshape(N, -1)
    check_split(arrays, expected.astype(np.float32))
    full = unsplit(arrays)
    assert full[0, 0] == -1.0 and full[-1, -1] == 1.0
    # Flattened row-major (H, W, C): the channels of a pixel are adjacent.
    np.testing.assert_allclose(full[0, :3], [-1.0, -1.0 + 2 / (x.size - 1), -1 + 4 / (x.size - 1)])


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.int64, np.float16])
def test_npz_dtype_ranges(tmp_path: Path, dtype: type) -> None:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        ends, want_ends = [info.min, info.max], [-1.0, 1.0]
    else:
        ends, want_ends = [-2.0, 6.0], [-1.0, 1.0]
    x = np.resize(np.array(ends, dtype=dtype), N * 4).reshape(N, 2, 2)
    np.savez(tmp_path / "a.npz", x=x)
    _, arrays = load("npz", tmp_path / "a.npz")
    got = unsplit(arrays)
    assert set(np.unique(got)) == set(want_ends)
    np.testing.assert_array_equal(got, np.resize(np.array(want_ends, np.float32), (N, 4)))


def test_mnist_sized_idx_is_read_without_python_loops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6000, 28, 28), dtype=np.uint8)
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x))
    spec, arrays = load("idx", path)
    assert spec.dim == 784 and spec.image_shape == (28, 28, 1)
    assert arrays["train"].shape == (4800, 784) and arrays["heldout"].shape == (1200, 784)
    train_idx, _ = split_indices(6000)
    np.testing.assert_array_equal(
        arrays["train"][:50], x[train_idx[:50]].reshape(50, -1) / np.float32(127.5) - 1
    )


def test_read_idx_returns_the_raw_array(tmp_path: Path) -> None:
    x = pixels()
    got = data.read_idx(write(tmp_path / "a", idx_bytes(x), gz=True))
    assert got.dtype == np.uint8 and got.shape == (N, H, W)
    np.testing.assert_array_equal(got, x)


def test_digits_spec_has_image_shape() -> None:
    spec, _ = load("digits")
    assert spec.image_shape == (8, 8, 1) and spec.dim == 64


def test_builtin_specs_keep_image_shape_none() -> None:
    assert load("swissroll")[0].image_shape is None


def test_digits_labels_follow_the_split() -> None:
    from sklearn.datasets import load_digits

    labels = data.digits_labels()
    _, arrays = load("digits")
    raw = load_digits()
    train_idx, heldout_idx = split_indices(1797)
    for name, idx in (("train", train_idx), ("heldout", heldout_idx)):
        assert labels[name].shape == (arrays[name].shape[0],)
        np.testing.assert_array_equal(labels[name], raw.target[idx])
        np.testing.assert_array_equal(arrays[name], (raw.data[idx] / 8 - 1).astype(np.float32))


# Errors: every problem is a one-line WganError naming the file ----------------------------------


def _idx(path: Path, x: np.ndarray | None = None, **kw) -> Path:
    return write(path, idx_bytes(pixels() if x is None else x, **kw))


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _pickle(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"x": pixels()}))
    return path


def _cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


IDX_ERRORS = {
    "missing": (lambda p: p, "not found"),
    "empty": (lambda p: write(p, b""), "truncated"),
    "wrong magic": (lambda p: write(p, b"\x12\x34\x56\x78" + bytes(100)), "magic"),
    "png": (lambda p: write(p, b"\x89PNG\r\n\x1a\n" + bytes(100)), "magic"),
    "labels file": (lambda p: _idx(p, np.arange(N, dtype=np.uint8)), "1-D"),
    "2-D": (lambda p: _idx(p, pixels()[0]), "2-D"),
    "4-D": (lambda p: _idx(p, pixels()[..., None]), "4-D"),
    "truncated header": (lambda p: write(p, idx_bytes(pixels())[:9]), "truncated"),
    "truncated data": (lambda p: write(p, idx_bytes(pixels())[:-1]), "truncated"),
    "trailing bytes": (lambda p: write(p, idx_bytes(pixels()) + b"\0"), "trailing"),
    "truncated gzip": (
        lambda p: write(p, gzip.compress(idx_bytes(pixels()), mtime=0)[:-12]),
        "gzip",
    ),
    "too few": (lambda p: _idx(p, pixels()[: MIN_IMAGES - 1]), "at least 10"),
    "nan": (lambda p: _idx(p, np.where(pixels() == 0, np.nan, 1.0), type_code=0x0D), "NaN"),
    "constant": (lambda p: _idx(p, np.ones((N, 2, 2)), type_code=0x0D), "constant"),
    "directory": (lambda p: (p.mkdir(), p)[1], "not a regular file"),
}

NPZ_ERRORS = {
    "missing": (lambda p: p, "not found"),
    "pickle file": (_pickle, "pickle"),
    "object array": (lambda p: _npz(p, x=np.array([pixels(), "a"], dtype=object)), "objects"),
    "npy": (lambda p: (np.save(p.with_suffix(".npy"), pixels()), p.with_suffix(".npy"))[1], "npy"),
    "not a zip": (lambda p: write(p, b"hello, world\n"), "not an .npz"),
    "truncated": (lambda p: _cut(_npz(p, x=pixels()), 60), "broken"),
    "no x": (lambda p: _npz(p, images=pixels(), labels=np.arange(N)), "'images'"),
    "empty archive": (lambda p: _npz(p), "no array 'x'"),
    "2-D": (lambda p: _npz(p, x=pixels().reshape(N, -1)), "2-D"),
    "5-D": (lambda p: _npz(p, x=pixels()[..., None, None]), "5-D"),
    "channels first": (
        lambda p: _npz(p, x=np.arange(N * 30, dtype=np.uint8).reshape(N, 1, 5, 6)),
        "channels-first",
    ),
    "too few": (lambda p: _npz(p, x=pixels()[:3]), "3 images"),
    "no images": (lambda p: _npz(p, x=np.zeros((0, 4, 4), np.uint8)), "0 images"),
    "nan": (lambda p: _npz(p, x=np.where(pixels() == 0, np.nan, 1.0)), "NaN"),
    "inf": (lambda p: _npz(p, x=np.where(pixels() == 0, -np.inf, 1.0)), "non-finite"),
    "constant": (lambda p: _npz(p, x=np.full((N, 2, 2), 0.5)), "constant"),
    "bool": (lambda p: _npz(p, x=pixels() > 3), "dtype bool"),
    "complex": (lambda p: _npz(p, x=pixels() + 1j), "complex"),
    "strings": (lambda p: _npz(p, x=np.full((N, 2, 2), "a")), "dtype"),
}


def _expect_error(name: str, path: Path, needle: str) -> None:
    with pytest.raises(WganError) as err:
        load(name, str(path))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg, msg
    assert needle in msg, msg


@pytest.mark.parametrize("case", list(IDX_ERRORS))
def test_idx_errors(tmp_path: Path, case: str) -> None:
    make, needle = IDX_ERRORS[case]
    _expect_error("idx", make(tmp_path / "bad-idx"), needle)


@pytest.mark.parametrize("case", list(NPZ_ERRORS))
def test_npz_errors(tmp_path: Path, case: str) -> None:
    make, needle = NPZ_ERRORS[case]
    _expect_error("npz", make(tmp_path / "bad.npz"), needle)


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_file_dataset_needs_a_path(name: str) -> None:
    with pytest.raises(WganError, match="data.path"):
        load(name)


def test_idx_and_npz_are_not_interchangeable(tmp_path: Path) -> None:
    npz = _npz(tmp_path / "a.npz", x=pixels())
    idx = _idx(tmp_path / "a.idx")
    _expect_error("idx", npz, "magic")
    _expect_error("npz", idx, "not an .npz")
