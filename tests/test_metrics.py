"""Diagnostics against closed forms and brute force, never against the code's own formulas."""

from __future__ import annotations

import itertools
import math
import random

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from scipy.optimize import linprog

from wgan_cli.metrics import (
    clip_fraction,
    high_quality_frac,
    input_grad_norms,
    layer_clip_fractions,
    layer_histograms,
    layer_names,
    modes_covered,
    w1_exact,
    weight_abs_stats,
)

FAST = settings(max_examples=40, deadline=None)
EDGES = np.linspace(-1.05, 1.05, 43)

# w1_exact --------------------------------------------------------------------------------------


def _w1_permutations(x: np.ndarray, y: np.ndarray) -> float:
    # Equal sizes, uniform weights: the optimal coupling is a permutation (Birkhoff).
    n = x.shape[0]
    return min(
        np.mean([np.linalg.norm(x[i] - y[p[i]]) for i in range(n)])
        for p in itertools.permutations(range(n))
    )


def _w1_linprog(x: np.ndarray, y: np.ndarray) -> float:
    # The transport LP written out directly: min <C, P> s.t. P 1 = a, P^T 1 = b, P >= 0.
    n, m = x.shape[0], y.shape[0]
    cost = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    rows = np.kron(np.eye(n), np.ones((1, m)))
    cols = np.kron(np.ones((1, n)), np.eye(m))
    b_eq = np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)])
    res = linprog(cost.ravel(), A_eq=np.vstack([rows, cols]), b_eq=b_eq, bounds=(0, None))
    assert res.success
    return float(res.fun)


def test_w1_1d_shifted_gaussians() -> None:
    # W1(N(0,1), N(3,1)) = 3 (a translation). The empirical W1 of n = 2000 samples is off by
    # O(1/sqrt(n)) ~ 0.02-0.03, i.e. about 1% of 3; 2% leaves a margin.
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, size=(2000, 1))
    y = rng.normal(3.0, 1.0, size=(2000, 1))
    assert w1_exact(x, y) == pytest.approx(3.0, rel=0.02)
    # 1-D arrays are read as (n, 1)
    assert w1_exact(x[:, 0], y[:, 0]) == pytest.approx(w1_exact(x, y), rel=1e-12)


@pytest.mark.parametrize("v", [(0.3, -0.4), (2.0, 1.0), (0.0, 1e-3), (1.0, 2.0, 2.0)])
def test_w1_translation_is_the_shift_length(v: tuple[float, ...]) -> None:
    # Lower bound: f(x) = v.x / |v| is 1-Lipschitz with E f(y) - E f(x) = |v|. Upper bound: the
    # identity coupling moves every point by exactly |v|. So W1 = |v| exactly.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, len(v)))
    y = (x + np.asarray(v))[rng.permutation(60)]
    assert w1_exact(x, y) == pytest.approx(math.hypot(*v), rel=1e-9, abs=1e-12)
    assert w1_exact(y, x) == pytest.approx(math.hypot(*v), rel=1e-9, abs=1e-12)


@FAST
@given(n=st.integers(1, 6), d=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_w1_matches_brute_force_over_permutations(n: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 2
    assert w1_exact(x, y) == pytest.approx(_w1_permutations(x, y), rel=1e-9, abs=1e-12)


@FAST
@given(
    n=st.integers(1, 5), m=st.integers(1, 5), d=st.integers(1, 3), seed=st.integers(0, 2**32 - 1)
)
def test_w1_unequal_sizes_matches_the_lp(n: int, m: int, d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.uniform(-2, 2, size=(m, d))
    assert w1_exact(x, y) == pytest.approx(_w1_linprog(x, y), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_w1_repeated_copy_is_zero(d: int) -> None:
    # y = x twice over is the same uniform measure, so the distance is 0.
    x = np.random.default_rng(2).normal(size=(7, d))
    y = np.concatenate([x, x])[::-1]
    assert w1_exact(x, y) == pytest.approx(0.0, abs=1e-12)


def test_w1_hand_example_unequal_sizes() -> None:
    # x = {0}, y = {1, 3}: all mass at 0 moves to 1 and 3, cost (1 + 3) / 2 = 2.
    assert w1_exact(np.array([[0.0]]), np.array([[1.0], [3.0]])) == pytest.approx(2.0)
    # In 2-D: {(0,0)} to {(3,4), (0,1)}: (5 + 1) / 2 = 3.
    assert w1_exact(np.zeros((1, 2)), np.array([[3.0, 4.0], [0.0, 1.0]])) == pytest.approx(3.0)


def test_w1_float32_inputs_and_bad_inputs() -> None:
    x = np.zeros((3, 2), np.float32)
    assert w1_exact(x, x + np.float32(1.0)) == pytest.approx(math.sqrt(2), rel=1e-9)
    assert math.isnan(w1_exact(np.array([[np.nan, 0.0]]), np.zeros((2, 2))))
    with pytest.raises(ValueError):
        w1_exact(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        w1_exact(np.zeros((0, 2)), np.zeros((3, 2)))


# clip fraction and weight stats ----------------------------------------------------------------

# 7 values; |p| = 0.01, 0.01, 0.00995, 0.0098, 0, 0.005, 0.02 (no value on a band edge)
TREE = {
    "Dense_0": {"kernel": jnp.array([[0.01, -0.01], [0.00995, 0.0098]]), "bias": jnp.array([0.0])},
    "Dense_1": {"kernel": jnp.array([[0.005]]), "bias": jnp.array([-0.02])},
}


def test_clip_fraction_hand_built_tree() -> None:
    # c = 0.01: band |p| >= 0.0099 holds 0.01, -0.01, 0.00995, -0.02 -> 4 / 7
    assert float(clip_fraction(TREE, 0.01)) == pytest.approx(4 / 7)
    # c = 0.02: band >= 0.0198 holds only -0.02 -> 1 / 7; c = 0.001: every nonzero -> 6 / 7
    cs = jnp.array([0.01, 0.02, 0.001])
    got = jax.jit(jax.vmap(clip_fraction, in_axes=(None, 0)))(TREE, cs)
    np.testing.assert_allclose(np.asarray(got), [4 / 7, 1 / 7, 6 / 7], rtol=1e-6)
    # per layer, in layer order: Dense_0 has 3 of 5 at c = 0.01, Dense_1 1 of 2
    np.testing.assert_allclose(np.asarray(layer_clip_fractions(TREE, 0.01)), [3 / 5, 1 / 2])


def test_clip_fraction_of_fully_clipped_params_is_one() -> None:
    params = {"w": jnp.where(jnp.arange(10) % 2 == 0, 0.05, -0.05)}
    assert float(clip_fraction(params, 0.05)) == 1.0


def test_weight_abs_stats_hand_built_tree() -> None:
    mean, mx = weight_abs_stats(TREE)
    total = 0.01 + 0.01 + 0.00995 + 0.0098 + 0.0 + 0.005 + 0.02
    assert float(mean) == pytest.approx(total / 7, rel=1e-6)
    assert float(mx) == pytest.approx(0.02)
    stacked = jax.tree_util.tree_map(lambda p: jnp.stack([p, 2 * p]), TREE)
    means, maxes = jax.jit(jax.vmap(weight_abs_stats))(stacked)
    np.testing.assert_allclose(np.asarray(means), [total / 7, 2 * total / 7], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(maxes), [0.02, 0.04], rtol=1e-6)


# input gradients -------------------------------------------------------------------------------


def test_input_grad_norms_linear_is_weight_norm() -> None:
    x = jax.random.normal(jax.random.key(0), (5, 3))
    w = jnp.array([1.0, -2.0, 2.0])  # |w| = 3
    got = input_grad_norms(lambda z: z @ w, x)
    np.testing.assert_allclose(np.asarray(got), np.full(5, 3.0), rtol=1e-6)
    # under jit and vmap over a run axis of weights: |(3, 4, 0)| = 5, |(0, 0, 0.5)| = 0.5
    ws = jnp.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.5]])
    batched = jax.jit(jax.vmap(lambda wi: input_grad_norms(lambda z: z @ wi, x)))(ws)
    np.testing.assert_allclose(np.asarray(batched), [[5.0] * 5, [0.5] * 5], rtol=1e-6)


def test_input_grad_norms_square_norm() -> None:
    # f(x) = |x|^2 has gradient 2x, so the norm is 2 |x_i| per row.
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0], [-0.5, 0.0]], np.float32)
    got = input_grad_norms(lambda z: jnp.sum(z**2, axis=1), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), [10.0, 0.0, 2 * math.sqrt(2), 1.0], rtol=1e-6)


# layer histograms ------------------------------------------------------------------------------


def _twelve_layers(seed: int = 0) -> tuple[dict, list[np.ndarray]]:
    # Layer i: kernel (i + 1, 3), bias (3,), values ~ N(0, (0.1 (i+1))^2) so each layer's
    # histogram is distinct and wide layers spill past the outer edges.
    rng = np.random.default_rng(seed)
    layers, flat = {}, []
    for i in range(12):
        k = rng.normal(0, 0.1 * (i + 1), size=(i + 1, 3)).astype(np.float32)
        b = rng.normal(0, 0.1 * (i + 1), size=(3,)).astype(np.float32)
        layers[f"Dense_{i}"] = {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)}
        flat.append(np.concatenate([k.ravel(), b]))
    order = list(layers)
    random.Random(seed).shuffle(order)  # insertion order must not matter
    return {"params": {name: layers[name] for name in order}}, flat


def _brute_histogram(values: np.ndarray, scale: float, edges: np.ndarray) -> np.ndarray:
    # numpy's bins, with out-of-range values moved onto the end edges
    return np.histogram(np.clip(values / scale, edges[0], edges[-1]), bins=edges)[0]


def test_layer_names_are_in_numeric_order() -> None:
    params, _ = _twelve_layers()
    assert layer_names(params) == [f"Dense_{i}" for i in range(12)]
    assert layer_names(params["params"]) == layer_names(params)  # bare params dict too


def test_layer_histograms_order_and_counts() -> None:
    params, flat = _twelve_layers()
    scale = 0.5
    hist = np.asarray(layer_histograms(params, scale, EDGES))
    assert hist.shape == (12, 42)
    for i in range(12):
        assert hist[i].sum() == 3 * (i + 1) + 3  # kernel (i+1, 3) + bias (3,)
        np.testing.assert_array_equal(hist[i], _brute_histogram(flat[i], scale, EDGES))
    assert hist[11, 0] > 0 and hist[11, -1] > 0  # N(0, 1.2^2) / 0.5 spills past +-1.05


def test_layer_histograms_under_jit_and_vmap_over_scale() -> None:
    params, flat = _twelve_layers(seed=1)
    scales = jnp.array([0.1, 1.0, 10.0])
    hist = jax.jit(jax.vmap(lambda s: layer_histograms(params, s, EDGES)))(scales)
    assert hist.shape == (3, 12, 42)
    for j, s in enumerate([0.1, 1.0, 10.0]):
        for i in (0, 5, 11):
            np.testing.assert_array_equal(hist[j, i], _brute_histogram(flat[i], s, EDGES))


@FAST
@given(
    values=st.lists(
        st.floats(-3, 3, allow_nan=False, width=32).filter(lambda v: abs(v) > 1e-30),
        min_size=32,
        max_size=32,  # one shape, so one compile per n_bins
    ),
    n_bins=st.integers(1, 6),
)
def test_layer_histograms_match_numpy(values: list[float], n_bins: int) -> None:
    # Edges at odd multiples of 1/7 (not representable), so no value sits exactly on an edge.
    edges = (np.arange(n_bins + 1) * 2 - n_bins) / 7
    v = np.asarray(values, np.float32)
    hist = np.asarray(layer_histograms({"Dense_0": {"kernel": jnp.asarray(v)}}, 1.0, edges))
    np.testing.assert_array_equal(hist[0], _brute_histogram(v, 1.0, edges))


# mode coverage ---------------------------------------------------------------------------------

MODES = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))
STD = 0.05


def test_constant_generator_covers_one_mode() -> None:
    samples = jnp.tile(jnp.array([[0.0, 1.0]]), (100, 1))
    assert int(modes_covered(samples, MODES, STD)) == 1
    assert float(high_quality_frac(samples, MODES, STD)) == 1.0
    # a constant far from every mode covers none
    far = jnp.zeros((100, 2))
    assert int(modes_covered(far, MODES, STD)) == 0
    assert float(high_quality_frac(far, MODES, STD)) == 0.0


def test_exact_centres_are_all_high_quality() -> None:
    samples = jnp.asarray(MODES * 3)
    assert int(modes_covered(samples, MODES, STD)) == 4
    assert float(high_quality_frac(samples, MODES, STD)) == 1.0


def test_three_std_boundary_and_mixed_quality() -> None:
    # distances 2.9 std (inside) and 3.1 std (outside) from mode (1, 0), along x
    inside = [1.0 + 2.9 * STD, 0.0]
    outside = [1.0 - 3.1 * STD, 0.0]
    samples = jnp.array([inside, outside, outside, [0.0, -1.0 + 0.02]])
    assert int(modes_covered(samples, MODES, STD)) == 2
    assert float(high_quality_frac(samples, MODES, STD)) == pytest.approx(0.5)


def test_mode_metrics_under_jit_and_vmap() -> None:
    batch = jnp.stack([jnp.asarray(MODES), jnp.zeros((4, 2)), jnp.asarray(MODES[:2] * 2)])
    covered = jax.jit(jax.vmap(lambda s: modes_covered(s, MODES, STD)))(batch)
    quality = jax.jit(jax.vmap(lambda s: high_quality_frac(s, MODES, STD)))(batch)
    np.testing.assert_array_equal(np.asarray(covered), [4, 0, 2])
    np.testing.assert_allclose(np.asarray(quality), [1.0, 0.0, 1.0])
