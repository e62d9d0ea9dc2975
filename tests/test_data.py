"""Datasets: each checked against its written definition, with expected values from closed forms."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_cli.data import (
    DATASETS,
    FILE_DATASETS,
    DataSpec,
    load,
    sample_heldout,
    sample_train,
)
from wgan_cli.errors import WganError

N = 64  # one batch size across tests: every new static n is another compile
DIMS = {"8gaussians": 2, "25gaussians": 2, "swissroll": 2, "gaussian1d": 1, "digits": 64}


@pytest.fixture(scope="module")
def digits() -> tuple[DataSpec, dict[str, np.ndarray]]:
    return load("digits")


def _load(name: str, digits: tuple[DataSpec, dict[str, np.ndarray]]) -> tuple[DataSpec, dict]:
    return digits if name == "digits" else load(name)


def _nearest(x: np.ndarray, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.linalg.norm(x[:, None, :] - modes[None, :, :], axis=-1)
    return d.argmin(axis=1), d.min(axis=1)


def test_registry_lists_every_dataset() -> None:
    assert tuple(DIMS) + FILE_DATASETS == DATASETS


BUILT_IN = [name for name in DATASETS if name not in FILE_DATASETS]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(WganError) as err:
        load("mnist")
    msg = str(err.value)
    assert "\n" not in msg and "mnist" in msg
    assert all(name in msg for name in DATASETS)


def test_path_is_accepted_and_ignored() -> None:
    assert load("swissroll", path="/nonexistent.npz") == load("swissroll")


@pytest.mark.parametrize("name", BUILT_IN)
def test_shapes_dtypes_and_spec(name: str, digits: tuple[DataSpec, dict]) -> None:
    spec, arrays = _load(name, digits)
    assert spec.name == name and spec.dim == DIMS[name]
    assert spec.finite == (name == "digits") and spec.bounded == (name == "digits")
    hash(spec)  # closed over inside jit: must be hashable
    key = jax.random.key(0)
    x = sample_train(spec, arrays, key, N)
    h = sample_heldout(spec, arrays, key, N)
    assert x.shape == (N, spec.dim) and x.dtype == jnp.float32
    assert h.shape == (N, spec.dim) and h.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(x)))
    if spec.finite:
        for a in arrays.values():
            assert a.dtype == np.float32 and a.shape[1] == spec.dim
    else:
        assert arrays == {}


@pytest.mark.parametrize("name", BUILT_IN)
def test_same_key_same_sample_different_keys_differ(name: str, digits: tuple) -> None:
    spec, arrays = _load(name, digits)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    for sample in (sample_train, sample_heldout):
        a = np.asarray(sample(spec, arrays, k1, N))
        np.testing.assert_array_equal(a, np.asarray(sample(spec, arrays, k1, N)))
        assert not np.array_equal(a, np.asarray(sample(spec, arrays, k2, N)))


# 25gaussians runs the same mixture code as 8gaussians; skipping it saves a ~1 s compile.
@pytest.mark.parametrize("name", ["8gaussians", "swissroll", "gaussian1d", "digits"])
def test_sample_train_under_jit_and_vmap(name: str, digits: tuple) -> None:
    spec, arrays = _load(name, digits)
    jarrays = {k: jnp.asarray(v) for k, v in arrays.items()}  # traced arguments, not constants
    keys = jax.random.split(jax.random.key(3), 3)
    # One program covers both: jit with spec and n static, vmap over keys (the run axis).
    batched = jax.jit(jax.vmap(lambda a, k: sample_train(spec, a, k, N), in_axes=(None, 0)))
    out = np.asarray(batched(jarrays, keys))
    assert out.shape == (3, N, spec.dim) and out.dtype == np.float32
    for i in range(3):
        np.testing.assert_allclose(out[i], sample_train(spec, arrays, keys[i], N), atol=1e-6)
    assert not np.array_equal(out[0], out[1])


def test_sample_heldout_under_jit_and_vmap(digits: tuple) -> None:
    spec, arrays = digits
    jarrays = {k: jnp.asarray(v) for k, v in arrays.items()}
    keys = jax.random.split(jax.random.key(9), 3)
    held = jax.jit(jax.vmap(lambda k: sample_heldout(spec, jarrays, k, N)))(keys)
    assert held.shape == (3, N, 64)
    np.testing.assert_array_equal(held[1], sample_heldout(spec, arrays, keys[1], N))


def test_8gaussians_modes_are_the_closed_form_centres() -> None:
    spec, _ = load("8gaussians")
    r = math.sqrt(2.0)
    centres = [(2, 0), (-2, 0), (0, 2), (0, -2), (r, r), (r, -r), (-r, r), (-r, -r)]
    expected = {(round(a / 1.414, 9), round(b / 1.414, 9)) for a, b in centres}
    assert {tuple(round(v, 9) for v in m) for m in spec.modes} == expected
    assert len(spec.modes) == 8
    np.testing.assert_allclose(np.linalg.norm(spec.modes, axis=1), 2 / 1.414)
    assert spec.mode_std == pytest.approx(0.02 / 1.414)


def test_25gaussians_modes_are_the_closed_form_centres() -> None:
    spec, _ = load("25gaussians")
    grid = {
        (round(2 * i / 2.828, 9), round(2 * j / 2.828, 9))
        for i in range(-2, 3)
        for j in range(-2, 3)
    }
    assert len(spec.modes) == 25
    assert {tuple(round(v, 9) for v in m) for m in spec.modes} == grid
    assert spec.mode_std == pytest.approx(0.05 / 2.828)


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians"])
def test_mixture_samples_sit_on_their_modes(name: str) -> None:
    spec, arrays = load(name)
    modes = np.asarray(spec.modes)
    n = 2000
    x = np.asarray(sample_train(spec, arrays, jax.random.key(4), n), dtype=np.float64)
    nearest, dist = _nearest(x, modes)
    # Every mode hit: P(some mode missed) <= 25 * (24/25)^2000 ~ 1e-34.
    assert set(nearest) == set(range(len(modes)))
    # Distance to the centre is std * chi(2): mean std * sqrt(pi/2), sd std * sqrt(2 - pi/2).
    # Over 2000 samples the sd of the mean is 1.5% of it; 6% is a 4-sigma tolerance.
    ratio = dist.mean() / spec.mode_std
    assert ratio == pytest.approx(math.sqrt(math.pi / 2), rel=0.06)
    # P(chi(2) > 6) = exp(-18): no sample should be 6 std away from its mode.
    assert dist.max() < 6 * spec.mode_std
    # Mode frequencies are uniform: each count is Binomial(n, 1/K); allow 5 sd.
    k = len(modes)
    counts = np.bincount(nearest, minlength=k)
    sd = math.sqrt(n * (1 / k) * (1 - 1 / k))
    assert np.all(np.abs(counts - n / k) < 5 * sd)


def test_swissroll_lies_on_the_scaled_roll() -> None:
    spec, arrays = load("swissroll")
    x = np.asarray(sample_train(spec, arrays, jax.random.key(5), 2000), dtype=np.float64) * 7.5
    radius = np.linalg.norm(x, axis=1)
    # Noise-free radius is t in [1.5 pi, 4.5 pi]; the 2-D noise norm is 0.25 * chi(2), which
    # exceeds 6 * 0.25 with probability exp(-18).
    margin = 6 * 0.25
    assert radius.max() <= 4.5 * np.pi + margin
    assert radius.min() >= 1.5 * np.pi - margin
    assert np.abs(x).max() / 7.5 <= (4.5 * np.pi + margin) / 7.5
    # The noise-free curve point is within |noise| of the sample, so the distance to the curve
    # (densely sampled, spacing < 0.02) is at most 6 * 0.25 + 0.02 for every sample.
    grid = np.linspace(1.5 * np.pi, 4.5 * np.pi, 5000)
    curve = np.stack([grid * np.cos(grid), grid * np.sin(grid)], axis=1)
    d = np.linalg.norm(x[:, None, :] - curve[None, :, :], axis=-1)
    dist, t = d.min(axis=1), grid[d.argmin(axis=1)]
    assert dist.max() <= margin + 0.02
    # Locally the curve is straight (radius >= 4.7 >> 0.25), so the distance is the normal
    # noise component, |N(0, 0.25^2)|, whose median is 0.6745 * 0.25; the sd of the sample
    # median over 2000 draws is ~3% of it, so 15% is a 5-sigma tolerance.
    assert np.median(dist) == pytest.approx(0.6745 * 0.25, rel=0.15)
    # t ~ U(1.5 pi, 4.5 pi): mean 3 pi, sd of the mean 3 pi / sqrt(12 * 2000) = 0.06.
    assert abs(t.mean() - 3 * np.pi) < 0.3


def test_gaussian1d_moments() -> None:
    spec, arrays = load("gaussian1d")
    n = 20000
    x = np.asarray(sample_train(spec, arrays, jax.random.key(6), n), dtype=np.float64)[:, 0]
    # sd of the sample mean is 1/sqrt(n) = 0.007; of the sample std about 1/sqrt(2n) = 0.005.
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.std() - 1.0) < 5 / math.sqrt(2 * n)


def test_digits_split(digits: tuple[DataSpec, dict[str, np.ndarray]]) -> None:
    from sklearn.datasets import load_digits

    spec, arrays = digits
    train, heldout = arrays["train"], arrays["heldout"]
    # ceil(0.2 * 1797) = 360 held out, 1797 - 360 = 1437 train.
    assert train.shape == (1437, 64) and heldout.shape == (360, 64)
    for a in (train, heldout):
        assert a.min() >= -1.0 and a.max() <= 1.0
    raw = load_digits().data
    assert raw.shape == (1797, 64)
    # The shipped images are pairwise distinct, so a row's content identifies its index.
    index = {row.tobytes(): i for i, row in enumerate(raw.astype(np.int64))}
    assert len(index) == 1797

    def indices(a: np.ndarray) -> list[int]:
        ints = (a.astype(np.float64) + 1) * 8  # invert x / 8 - 1
        np.testing.assert_array_equal(ints, np.round(ints))
        return [index[row.tobytes()] for row in ints.astype(np.int64)]

    train_idx, heldout_idx = indices(train), indices(heldout)
    assert not set(train_idx) & set(heldout_idx)
    assert sorted(train_idx + heldout_idx) == list(range(1797))
    # The documented split: the first 360 of numpy's default_rng(0).permutation(1797).
    assert sorted(heldout_idx) == sorted(np.random.default_rng(0).permutation(1797)[:360])


def test_digits_is_reloaded_identically(digits: tuple[DataSpec, dict[str, np.ndarray]]) -> None:
    spec, arrays = load("digits")
    assert spec == digits[0]
    for k in ("train", "heldout"):
        np.testing.assert_array_equal(arrays[k], digits[1][k])


@pytest.mark.parametrize("n", [N, 1000])
def test_digits_heldout_distinct_rows(n: int, digits: tuple) -> None:
    spec, arrays = digits
    m = arrays["heldout"].shape[0]
    h = np.asarray(sample_heldout(spec, arrays, jax.random.key(7), n))
    assert h.shape == (min(n, m), 64)
    heldout_rows = {r.tobytes() for r in arrays["heldout"]}
    returned = [r.tobytes() for r in h]
    assert len(set(returned)) == len(returned)  # images are distinct, so rows are too
    assert set(returned) <= heldout_rows


def test_digits_train_rows_come_from_train(digits: tuple) -> None:
    spec, arrays = digits
    x = np.asarray(sample_train(spec, arrays, jax.random.key(8), 500))
    train_rows = {r.tobytes() for r in arrays["train"]}
    assert all(r.tobytes() in train_rows for r in x)
    # With replacement: 500 draws from 1437 repeat a row with probability ~1 (birthday bound).
    assert len({r.tobytes() for r in x}) < 500
