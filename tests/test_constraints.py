"""The clip transform: every critic parameter lands in [-c, c], and nothing else changes."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgan_cli.constraints import clip_params, clip_to_box

F32 = np.float32


def floats(lo: float, hi: float) -> st.SearchStrategy:
    # Bounds must be float32 values; XLA on CPU flushes subnormals to zero, numpy does not.
    lo, hi = float(F32(lo)), float(F32(hi))
    return st.floats(lo, hi, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def apply_clip(params, updates, c, kernels_only=False):
    tx = clip_to_box(c, kernels_only)
    out, _ = tx.update(updates, tx.init(params), params)
    return optax.apply_updates(params, out)


@settings(max_examples=300, deadline=None)
@given(
    p=hnp.arrays(F32, 32, elements=floats(-10, 10)),
    data=st.data(),
    c=floats(1e-4, 1.0),
)
def test_any_params_and_updates_land_in_the_box(p, data, c):
    u = data.draw(hnp.arrays(F32, p.shape, elements=floats(-10, 10)))
    params = {"params": {"Dense_0": {"kernel": jnp.asarray(p), "bias": jnp.asarray(-p[:1])}}}
    updates = {"params": {"Dense_0": {"kernel": jnp.asarray(u), "bias": jnp.asarray(u[:1])}}}
    new = apply_clip(params, updates, jnp.float32(c))
    for leaf in jax.tree_util.tree_leaves(new):
        assert np.all(np.abs(np.asarray(leaf)) <= F32(c))


def test_sgd_step_past_c_stops_exactly_at_c():
    # SGD with lr 1 moves 0.009 by -grad; grad -0.011 would carry it to 0.02.
    tx = optax.chain(optax.sgd(1.0), clip_to_box(0.01))
    params = {"w": jnp.array([0.009], jnp.float32)}
    grads = {"w": jnp.array([-0.011], jnp.float32)}
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert new["w"][0] == F32(0.01)


@settings(max_examples=200, deadline=None)
@given(
    p=hnp.arrays(F32, 16, elements=floats(-0.0049, 0.0049)),
    g=hnp.arrays(F32, 16, elements=floats(-0.0049, 0.0049)),
)
def test_steps_that_stay_inside_are_plain_sgd(p, g):
    c = 0.01  # |p| < c/2 and |g| < c/2, so p - g stays inside (-c, c)
    params, grads = {"w": jnp.asarray(p)}, {"w": jnp.asarray(g)}
    tx = optax.chain(optax.sgd(1.0), clip_to_box(c))
    updates, _ = tx.update(grads, tx.init(params), params)
    clipped = optax.apply_updates(params, updates)["w"]
    sgd = optax.sgd(1.0)
    plain = optax.apply_updates(params, sgd.update(grads, sgd.init(params), params)[0])["w"]
    np.testing.assert_array_equal(np.asarray(clipped), np.asarray(plain))
    # XLA on CPU flushes subnormal results to zero (numpy keeps them): p - g below float32's
    # smallest normal number is 0 there, bit for bit what plain SGD gives too.
    expected = p - g
    expected[np.abs(expected) < np.finfo(F32).tiny] = 0
    np.testing.assert_array_equal(np.asarray(clipped), expected)


def test_update_without_params_is_a_clear_error():
    tx = clip_to_box(0.01)
    with pytest.raises(ValueError, match="needs the current params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_kernels_only_leaves_biases_alone():
    params = {"Dense_0": {"kernel": jnp.array([0.5, -0.5]), "bias": jnp.array([0.5])}}
    new = clip_params(params, 0.1, kernels_only=True)
    np.testing.assert_array_equal(new["Dense_0"]["kernel"], np.array([0.1, -0.1], F32))
    np.testing.assert_array_equal(new["Dense_0"]["bias"], [0.5])


def test_c_is_traced_so_a_new_c_never_recompiles():
    @jax.jit
    def step(c, p, u):
        return apply_clip(p, u, c)

    p, u = {"w": jnp.linspace(-1, 1, 9)}, {"w": jnp.full(9, 0.3)}
    results = [step(jnp.float32(c), p, u)["w"] for c in (0.001, 0.01, 0.1, 0.5)]
    assert step._cache_size() == 1
    for c, w in zip((0.001, 0.01, 0.1, 0.5), results, strict=True):
        expected = np.clip(np.linspace(-1, 1, 9, dtype=F32) + F32(0.3), -F32(c), F32(c))
        np.testing.assert_allclose(np.asarray(w), expected, rtol=0, atol=1e-7)
        assert np.abs(np.asarray(w)).max() <= F32(c)


def test_kernels_only_leaves_a_normalisations_scale_free_and_all_clips_it():
    params = {"Conv_0": {"kernel": jnp.full((2, 2), 0.5), "norm": {"scale": jnp.ones(2)}}}
    kept = clip_params(params, 0.1, kernels_only=True)
    np.testing.assert_array_equal(kept["Conv_0"]["norm"]["scale"], np.ones(2))
    np.testing.assert_array_equal(kept["Conv_0"]["kernel"], np.full((2, 2), 0.1, np.float32))
    every = clip_params(params, 0.1)
    np.testing.assert_array_equal(every["Conv_0"]["norm"]["scale"], np.full(2, 0.1, np.float32))
