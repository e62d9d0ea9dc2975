"""Diagnostics of a WGAN run: pure functions, each checked against a closed form in the tests.

``w1_exact`` runs on the host (numpy / POT) because exact optimal transport is a linear program
with no useful jit form. Everything else is pure JAX so the training loop can evaluate it inside
``jit(vmap(...))`` over the run axis (per-run ``c`` and ``scale`` may be traced values).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import ot
from scipy.stats import wasserstein_distance

# Host side -------------------------------------------------------------------------------------


def w1_exact(x: np.ndarray, y: np.ndarray) -> float:
    """Ground-truth W1 between two sample sets, the reference the critic's estimate is judged by.

    Exact (no entropic smoothing, no slicing) so ``lipschitz_ratio`` = w_estimate / w1_true
    isolates the critic's error. Rows are samples; 1-D arrays are treated as (n, 1). Returns NaN
    when either set holds a non-finite value (a diverged generator), instead of failing the log.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x.reshape(-1, 1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
    y = y.reshape(-1, 1) if y.ndim == 1 else y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"sample dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError("w1_exact needs at least one sample on each side")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    if x.shape[1] == 1:
        # In 1-D, W1 = integral |F^-1 - G^-1|: exact in O(n log n), no LP needed.
        return float(wasserstein_distance(x[:, 0], y[:, 0]))
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(y.shape[0], 1.0 / y.shape[0])
    # POT's "euclidean" expands |x|^2 + |y|^2 - 2 x.y, which leaves ~1e-8 where points coincide;
    # "minkowski" with p = 2 is the same metric computed from coordinate differences.
    cost = ot.dist(x, y, metric="minkowski", p=2)
    # The default iteration cap (1e5) can stop short of optimal for n ~ 1000 per side.
    return float(ot.emd2(a, b, cost, numItermax=10_000_000))


# In jit ----------------------------------------------------------------------------------------


def _leaves(params: Any) -> list[jax.Array]:
    return [jnp.asarray(p) for p in jax.tree_util.tree_leaves(params)]


def clip_fraction(params: Any, c: jax.Array | float) -> jax.Array:
    """Share of weights piled up at the clip boundary (|p| >= 0.99 c), the signature of clipping.

    The 1% band counts values the clip transform set to exactly ±c as well as those that sit
    just inside after an update.
    """
    leaves = _leaves(params)
    total = sum(p.size for p in leaves)
    if total == 0:
        return jnp.float32(0.0)
    thresh = 0.99 * jnp.asarray(c, jnp.float32)
    hits = sum(jnp.sum(jnp.abs(p) >= thresh) for p in leaves)
    return (hits / total).astype(jnp.float32)


def weight_abs_stats(params: Any) -> tuple[jax.Array, jax.Array]:
    """(mean, max) of |p| over every parameter: shows weights drifting to or away from ±c."""
    leaves = _leaves(params)
    total = sum(p.size for p in leaves)
    if total == 0:
        return jnp.float32(0.0), jnp.float32(0.0)
    abs_sum = sum(jnp.sum(jnp.abs(p).astype(jnp.float32)) for p in leaves)
    abs_max = jnp.max(
        jnp.stack([jnp.max(jnp.abs(p)).astype(jnp.float32) for p in leaves if p.size])
    )
    return abs_sum / total, abs_max


def input_grad_norms(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Per-sample ‖∇x f(x_i)‖₂: the critic's local Lipschitz constant, which WGAN wants near 1.

    ``f`` maps (n, d) -> (n,) with each output depending only on its own row, so the gradient of
    the sum holds every per-sample gradient in one backward pass.
    """
    grads = jax.grad(lambda z: jnp.sum(f(z)))(x)
    return jnp.linalg.norm(grads.reshape(grads.shape[0], -1), axis=1)


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def layers_in_order(params: Any) -> list[tuple[str, Any]]:
    """(name, layer params) in network order; takes {"params": {...}} or the bare dict."""
    tree = params["params"] if set(params) == {"params"} else params
    return [(k, tree[k]) for k in sorted(tree, key=_natural_key)]


def layer_names(params: Any) -> list[str]:
    """Layer names in network order (Dense_10 after Dense_9), matching ``layer_histograms`` rows."""
    return [name for name, _ in layers_in_order(params)]


def layer_clip_fractions(params: Any, c: jax.Array | float) -> jax.Array:
    """(L,) ``clip_fraction`` per layer, in ``layer_names`` order: where the pile-up happens."""
    return jnp.stack([clip_fraction(layer, c) for _, layer in layers_in_order(params)])


def layer_histograms(
    params: Any, scale: jax.Array | float, edges_rel: Sequence[float] | np.ndarray
) -> jax.Array:
    """(L, B) counts of each layer's kernel and bias values / ``scale``, binned by ``edges_rel``.

    Bins are relative to ``scale`` (normally c) so histograms of runs with different c share one
    axis and the pile-up at ±c always lands in the same bins. Bins are [e_i, e_{i+1}), the last
    one closed, as in numpy; values below the first edge or above the last count in the end bins
    so every parameter is counted.
    """
    edges = np.asarray(edges_rel, dtype=np.float32)
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError("edges_rel needs at least two edges")
    layers = [_leaves(layer) for _, layer in layers_in_order(params)]
    return _histograms(layers, jnp.asarray(scale, jnp.float32), jnp.asarray(edges[1:-1]))


@jax.jit
def _histograms(layers: list[list[jax.Array]], scale: jax.Array, inner: jax.Array) -> jax.Array:
    # One compiled program for all layers (eagerly, per-op dispatch of 12 layers is seconds).
    # Counting against the inner edges only sends out-of-range values to the end bins.
    n_bins = inner.shape[0] + 1
    rows = []
    for leaves in layers:
        values = jnp.concatenate([jnp.ravel(p).astype(jnp.float32) for p in leaves])
        idx = jnp.searchsorted(inner, values / scale, side="right", method="compare_all")
        rows.append(jnp.bincount(idx, length=n_bins))
    return jnp.stack(rows)


def _near_mode(samples: jax.Array, modes: Any, std: float | jax.Array) -> jax.Array:
    centres = jnp.asarray(modes, jnp.float32)
    d = jnp.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=-1)
    return d <= 3.0 * std


def modes_covered(samples: jax.Array, modes: Any, std: float | jax.Array) -> jax.Array:
    """Modes with at least one sample within 3 std: counts mode collapse on mixtures."""
    return jnp.sum(jnp.any(_near_mode(samples, modes, std), axis=0)).astype(jnp.int32)


def high_quality_frac(samples: jax.Array, modes: Any, std: float | jax.Array) -> jax.Array:
    """Share of samples within 3 std of some mode: separates sharp samples from smeared ones."""
    return jnp.mean(jnp.any(_near_mode(samples, modes, std), axis=1).astype(jnp.float32))


def effective_rank(singular_values: jax.Array) -> jax.Array:
    """exp of the entropy of the normalised singular values (Roy and Vetterli, 2007): how many
    directions a weight matrix really uses, which clipping is known to collapse."""
    p = singular_values / jnp.sum(singular_values)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))
