"""Dataset registry: exact definitions of the built-in data, sampled on device with JAX keys.

Every dataset is defined exactly here, because the experiments compare runs across constraint
settings and the true Wasserstein distance (``w1_true``) is only meaningful against a fixed,
known target. All samples are float32.

Formula datasets (``finite=False``; ``load`` returns ``arrays == {}``)
----------------------------------------------------------------------
``8gaussians`` (dim 2, unbounded)
    Centres at radius 2 on the compass points and diagonals:
    (2, 0), (-2, 0), (0, 2), (0, -2), (√2, √2), (√2, -√2), (-√2, √2), (-√2, -√2).
    A sample picks a centre uniformly, adds N(0, 0.02² I) noise, and the whole point is divided
    by 1.414. Hence ``modes`` = centres / 1.414 and ``mode_std`` = 0.02 / 1.414.
``25gaussians`` (dim 2, unbounded)
    Centres (2i, 2j) for i, j in -2..2 (25 centres, i-major order), chosen uniformly; noise
    N(0, 0.05² I); the whole point divided by 2.828. ``modes`` = centres / 2.828,
    ``mode_std`` = 0.05 / 2.828.
``swissroll`` (dim 2, unbounded)
    u ~ U(0, 1), t = 1.5π(1 + 2u) (so t in [1.5π, 4.5π]); point = (t cos t, t sin t) plus
    N(0, 0.25²) noise on each coordinate (columns x and z of scikit-learn's 3-D
    ``make_swiss_roll(noise=0.25)``), then divided by 7.5.
``gaussian1d`` (dim 1, unbounded)
    N(0, 1).

Finite datasets (``finite=True``; ``load`` returns ``{"train": (N, dim), "heldout": (M, dim)}``)
-------------------------------------------------------------------------------------------------
``digits`` (dim 64, bounded)
    scikit-learn's shipped 8x8 handwritten digits (``sklearn.datasets.load_digits``, 1,797
    images, read from the package, never downloaded), flattened to 64 values and mapped from
    0..16 to [-1, 1] by x / 8 - 1. Held-out split: with
    ``perm = numpy.random.default_rng(0).permutation(1797)``, the images at ``sort(perm[:360])``
    (ceil(0.2 * 1797) = 360) are held out and those at ``sort(perm[360:])`` (1,437) are
    train. The split is fixed so held-out metrics of different runs are comparable.

Sampling
--------
``sample_train`` draws n fresh formula samples, or n rows of ``arrays["train"]`` uniformly with
replacement. ``sample_heldout`` draws n fresh formula samples, or min(n, M) distinct rows of
``arrays["heldout"]`` (without replacement, so the static shape is min(n, M)). Both use the given
key as is (split internally, never reused); the caller passes independent keys for train and
held-out draws.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from wgan_cli.errors import WganError


@dataclass(frozen=True)
class DataSpec:
    """Static facts about a dataset; hashable so jitted code can close over it."""

    name: str
    dim: int
    bounded: bool
    finite: bool
    modes: tuple[tuple[float, ...], ...] | None
    mode_std: float | None


DATASETS: tuple[str, ...] = ("8gaussians", "25gaussians", "swissroll", "gaussian1d", "digits")

HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0

_SQRT2 = math.sqrt(2.0)
_CENTRES_8 = np.array(
    [
        (2.0, 0.0),
        (-2.0, 0.0),
        (0.0, 2.0),
        (0.0, -2.0),
        (_SQRT2, _SQRT2),
        (_SQRT2, -_SQRT2),
        (-_SQRT2, _SQRT2),
        (-_SQRT2, -_SQRT2),
    ]
)
_STD_8, _SCALE_8 = 0.02, 1.414
_CENTRES_25 = np.array([(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)])
_STD_25, _SCALE_25 = 0.05, 2.828
_SWISS_NOISE, _SWISS_SCALE = 0.25, 7.5


# One compiled program per (sampler, n) instead of one per primitive when called eagerly; inside
# the training loop's jit these calls are simply inlined.
_jit_n = functools.partial(jax.jit, static_argnums=1)


def _modes(centres: np.ndarray, scale: float) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in centres / scale)


def _mixture_sampler(
    centres: np.ndarray, std: float, scale: float
) -> Callable[[jax.Array, int], jax.Array]:
    @_jit_n
    def sample(key: jax.Array, n: int) -> jax.Array:
        k_mode, k_noise = jax.random.split(key)
        idx = jax.random.randint(k_mode, (n,), 0, centres.shape[0])
        c = jnp.asarray(centres, jnp.float32)[idx]
        noise = std * jax.random.normal(k_noise, (n, centres.shape[1]), jnp.float32)
        return (c + noise) / scale

    return sample


@_jit_n
def _swissroll(key: jax.Array, n: int) -> jax.Array:
    k_u, k_noise = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_u, (n,), jnp.float32))
    roll = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1)
    noise = _SWISS_NOISE * jax.random.normal(k_noise, (n, 2), jnp.float32)
    return (roll + noise) / _SWISS_SCALE


@_jit_n
def _gaussian1d(key: jax.Array, n: int) -> jax.Array:
    return jax.random.normal(key, (n, 1), jnp.float32)


_FORMULAS: dict[str, tuple[DataSpec, Callable[[jax.Array, int], jax.Array]]] = {
    "8gaussians": (
        DataSpec("8gaussians", 2, False, False, _modes(_CENTRES_8, _SCALE_8), _STD_8 / _SCALE_8),
        _mixture_sampler(_CENTRES_8, _STD_8, _SCALE_8),
    ),
    "25gaussians": (
        DataSpec(
            "25gaussians", 2, False, False, _modes(_CENTRES_25, _SCALE_25), _STD_25 / _SCALE_25
        ),
        _mixture_sampler(_CENTRES_25, _STD_25, _SCALE_25),
    ),
    "swissroll": (DataSpec("swissroll", 2, False, False, None, None), _swissroll),
    "gaussian1d": (DataSpec("gaussian1d", 1, False, False, None, None), _gaussian1d),
}


def _load_digits() -> tuple[DataSpec, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits  # deferred: sklearn import costs ~1 s

    x = (load_digits().data / 8.0 - 1.0).astype(np.float32)
    n = x.shape[0]
    n_heldout = math.ceil(HELDOUT_FRACTION * n)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    heldout_idx = np.sort(perm[:n_heldout])
    train_idx = np.sort(perm[n_heldout:])
    spec = DataSpec("digits", x.shape[1], True, True, None, None)
    return spec, {"train": x[train_idx], "heldout": x[heldout_idx]}


@functools.partial(jax.jit, static_argnums=2)
def _rows_with_replacement(rows: jax.Array, key: jax.Array, n: int) -> jax.Array:
    idx = jax.random.randint(key, (n,), 0, rows.shape[0])
    return rows[idx].astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=2)
def _rows_without_replacement(rows: jax.Array, key: jax.Array, n: int) -> jax.Array:
    m = rows.shape[0]
    idx = jax.random.permutation(key, m)[: min(n, m)]
    return rows[idx].astype(jnp.float32)


def load(name: str, path: str | None = None) -> tuple[DataSpec, dict[str, np.ndarray]]:
    """Resolve a dataset name once, on the host, before anything is compiled.

    ``path`` is accepted (and ignored) so user-file loaders (npz, idx) can be added without
    changing callers.
    """
    del path
    if name in _FORMULAS:
        return _FORMULAS[name][0], {}
    if name == "digits":
        return _load_digits()
    raise WganError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


def sample_train(spec: DataSpec, arrays: dict, key: jax.Array, n: int) -> jax.Array:
    """Draw a training batch on device; ``spec`` and ``n`` are static, ``arrays`` may be traced."""
    if spec.finite:
        return _rows_with_replacement(jnp.asarray(arrays["train"]), key, n)
    return _FORMULAS[spec.name][1](key, n)


def sample_heldout(spec: DataSpec, arrays: dict, key: jax.Array, n: int) -> jax.Array:
    """Draw evaluation samples the critic was never trained on (distinct rows for finite sets)."""
    if spec.finite:
        return _rows_without_replacement(jnp.asarray(arrays["heldout"]), key, n)
    return _FORMULAS[spec.name][1](key, n)
