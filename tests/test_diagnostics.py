"""The science diagnostics, each against an answer known without the code under test."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_cli import data, metrics
from wgan_cli.config import load_config
from wgan_cli.train import Hyper, Program, compiled, init_run, layer_gradient_norms


def one_run(c=0.01) -> Hyper:
    return Hyper(*(jnp.float32(v) for v in (c, 5e-5, 5e-5, 10.0)))


def program(*sets: str) -> Program:
    cfg = load_config(None, ["critic.hidden=8", "generator.hidden=8", *sets])
    return Program.from_config(cfg, data.load(cfg.data.dataset)[0])


def test_effective_rank_of_identity_is_n_and_of_rank_one_is_one():
    assert float(metrics.effective_rank(jnp.ones(7))) == pytest.approx(7.0, rel=1e-5)
    assert float(metrics.effective_rank(jnp.array([3.0, 0.0, 0.0]))) == pytest.approx(1.0)
    # Two equal directions and a zero: entropy log 2, so rank 2.
    assert float(metrics.effective_rank(jnp.array([5.0, 5.0, 0.0]))) == pytest.approx(2.0)


def test_last_hidden_layer_gradient_is_the_output_kernel_scaled():
    # The W loss is mean f(fake) - mean f(real), and f is linear in the last hidden layer's
    # activations h: d loss / d h_i = ±(1/n) w_out for each of the 2n rows, so the norm over
    # all rows is ||w_out|| * sqrt(2n / n^2) = ||w_out|| * sqrt(2 / n).
    prog = program("critic.depth=2")
    state = init_run(prog, jax.random.key(0), one_run(c=1.0))
    k1, k2 = jax.random.split(jax.random.key(1))
    n = 50
    real, fake = jax.random.normal(k1, (n, 2)), jax.random.normal(k2, (n, 2)) + 1.0
    act, weights = layer_gradient_norms(prog, state.critic, real, fake)
    params = state.critic["params"]
    w_out = np.asarray(params["Dense_2"]["kernel"], np.float64)
    assert act.shape == (2,) and weights.shape == (3,)
    assert float(act[1]) == pytest.approx(np.linalg.norm(w_out) * math.sqrt(2 / n), rel=1e-5)

    # The output layer's weight gradient: d/dW = mean_fake h - mean_real h, d/db = 0.
    def hidden(x):
        h = np.asarray(x, np.float64)
        for name in ("Dense_0", "Dense_1"):
            layer = params[name]
            h = np.maximum(h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"]), 0)
        return h

    expected = np.linalg.norm(hidden(fake).mean(0) - hidden(real).mean(0))
    assert float(weights[2]) == pytest.approx(expected, rel=1e-4)


def test_critic_only_mode_fixes_the_generator_at_real_data_plus_noise():
    # gaussian1d is N(0, 1); the fixed generator gives N(0, 1 + 1) = N(0, 2). Between two
    # centred Gaussians W1 = |s1 - s2| E|Z| = (sqrt(2) - 1) sqrt(2 / pi) = 0.3305.
    prog = program(
        "data.dataset=gaussian1d",
        "generator.noise_dim=1",
        "train.critic_only=true",
        "train.eval_samples=20000",
        "train.batch_size=32",
        "train.steps=4",
        "train.log_every=2",
    )
    init, chunk, _ = compiled(prog)
    hp = jax.tree_util.tree_map(lambda a: a[None], one_run())
    state = init(jax.random.key(3)[None], hp)
    gen_before = jax.tree_util.tree_map(np.asarray, state.gen)
    state, row = chunk(state, hp, {})
    assert np.isnan(row["gen_loss"][0])  # no generator step was taken
    assert int(row["critic_updates"][0]) == 2 * 5
    for a, b in zip(
        jax.tree_util.tree_leaves(state.gen), jax.tree_util.tree_leaves(gen_before), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), b)
    w1 = metrics.w1_exact(row["real"][0], row["fake"][0])
    # Sampling spread of W1 at n = 20000 is about 0.006 (1.8%); allow 8%.
    assert w1 == pytest.approx((math.sqrt(2) - 1) * math.sqrt(2 / math.pi), rel=0.08)
    assert float(np.std(row["fake"][0])) == pytest.approx(math.sqrt(2), rel=0.05)


def test_mixture_rows_count_modes_and_per_layer_pile_up():
    prog = program("data.dataset=8gaussians", "train.steps=2", "train.log_every=2")
    init, chunk, final = compiled(prog)
    hp = jax.tree_util.tree_map(lambda a: a[None], one_run(c=0.001))
    state, row = chunk(init(jax.random.key(4)[None], hp), hp, {})
    assert 0 <= int(row["modes_covered"][0]) <= 8
    assert 0.0 <= float(row["high_quality_frac"][0]) <= 1.0
    # Per-layer pile-up, weighted by each layer's size (kernel + bias), is the overall one.
    sizes = np.array([2 * 8 + 8, 8 * 8 + 8, 8 * 8 + 8, 8 + 1])
    per_layer = np.asarray(row["layer_clip_frac"][0])
    assert per_layer.shape == (4,)
    overall = float(row["clip_frac"][0])
    assert (per_layer * sizes).sum() / sizes.sum() == pytest.approx(overall, rel=1e-5)
    assert overall > 0.5  # c = 0.001 is far below the initial weights' scale
    ends = final(state)
    assert ends["surface"].shape == (1, 64, 64)
    assert [sv.shape for sv in ends["singular_values"]] == [(1, 2), (1, 8), (1, 8), (1, 1)]
