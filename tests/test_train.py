"""The training loop: loss convention, clipping in every step, vmap == solo, no recompiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_cli import data
from wgan_cli.config import load_config
from wgan_cli.train import Hyper, Program, compiled, critic_loss, evaluate, init_run

TINY = [
    "critic.hidden=16",
    "generator.hidden=16",
    "train.batch_size=32",
    "train.eval_samples=64",
    "train.steps=6",
    "train.log_every=3",
    "train.n_critic=2",
]


def tiny_program(*extra: str) -> Program:
    cfg = load_config(None, [*TINY, *extra])
    spec, _ = data.load(cfg.data.dataset)
    return Program.from_config(cfg, spec)


def hyper(cs, lr_critic=5e-5, lr_gen=5e-5, gp_lambda=10.0) -> Hyper:
    """Per-run arrays with a leading run axis, one run per c."""
    n = len(cs)
    return Hyper(
        jnp.asarray(cs, jnp.float32),
        jnp.full((n,), lr_critic, jnp.float32),
        jnp.full((n,), lr_gen, jnp.float32),
        jnp.full((n,), gp_lambda, jnp.float32),
    )


def one_run(c: float) -> Hyper:
    """Scalar hyperparameters of a single, unvmapped run."""
    return jax.tree_util.tree_map(lambda a: a[0], hyper([c]))


def numpy_critic(params: dict, x: np.ndarray) -> np.ndarray:
    """The MLP forward pass written out by hand: Dense, ReLU, ..., Dense."""
    layers = params["params"]
    names = sorted(layers, key=lambda n: int(n.split("_")[1]))
    h = np.asarray(x, np.float64)
    for i, name in enumerate(names):
        h = h @ np.asarray(layers[name]["kernel"], np.float64) + np.asarray(layers[name]["bias"])
        if i < len(names) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0]


def test_critic_loss_is_minus_the_w_estimate_on_the_same_batch():
    prog = tiny_program()
    hp = one_run(0.05)
    state = init_run(prog, jax.random.key(1), hp)
    real = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    fake = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32) + 1.0
    w_by_hand = numpy_critic(state.critic, real).mean() - numpy_critic(state.critic, fake).mean()
    loss = float(critic_loss(prog, state.critic, jnp.asarray(real), jnp.asarray(fake)))
    assert loss == pytest.approx(-w_by_hand, rel=1e-4, abs=1e-9)


def test_evaluate_w_estimate_is_mean_real_minus_mean_fake():
    prog = tiny_program()
    hp = one_run(0.05)
    state = init_run(prog, jax.random.key(2), hp)
    row = evaluate(prog, hp, {}, state)
    real, fake = np.asarray(row["real"]), np.asarray(row["fake"])
    expected = numpy_critic(state.critic, real).mean() - numpy_critic(state.critic, fake).mean()
    assert float(row["w_estimate"]) == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert real.shape == fake.shape == (64, 2)


def test_each_run_of_a_vmapped_group_keeps_its_own_c():
    prog = tiny_program()
    cs = [0.001, 0.01, 0.1]
    init, chunk, _ = compiled(prog)
    hp = hyper(cs, lr_critic=1e-2)  # a large lr pushes weights against the walls fast
    state = init(jax.random.split(jax.random.key(0), 3), hp)
    for _ in range(2):
        state, row = chunk(state, hp, {})
    for r, c in enumerate(cs):
        leaves = jax.tree_util.tree_leaves(
            jax.tree_util.tree_map(lambda a, r=r: a[r], state.critic)
        )
        assert max(float(jnp.abs(leaf).max()) for leaf in leaves) <= np.float32(c)
        assert float(row["clip_frac"][r]) > 0.05  # some weights sit on the walls
    np.testing.assert_array_equal(np.asarray(row["critic_updates"]), [12, 12, 12])
    np.testing.assert_array_equal(np.asarray(row["step"]), [6, 6, 6])


def test_vmapped_group_matches_each_run_trained_alone():
    prog = tiny_program()
    cs, seeds = [0.003, 0.02, 0.1], [0, 1, 2]
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    init, chunk, _ = compiled(prog)
    hp = hyper(cs, lr_critic=1e-3, lr_gen=1e-3)
    state = init(keys, hp)
    for _ in range(2):
        state, together = chunk(state, hp, {})
    for r, (c, key) in enumerate(zip(cs, keys, strict=True)):
        solo_hp = hyper([c], lr_critic=1e-3, lr_gen=1e-3)
        solo = init(key[None], solo_hp)
        for _ in range(2):
            solo, alone = chunk(solo, solo_hp, {})
        for name in ("w_estimate", "critic_loss", "gen_loss", "clip_frac", "grad_norm_real"):
            np.testing.assert_allclose(together[name][r], alone[name][0], rtol=1e-5, atol=1e-7)


def test_new_c_lr_or_seed_reuses_the_compiled_program():
    prog = tiny_program("train.eval_samples=63")  # a Program of its own: a fresh cache
    init, chunk, _ = compiled(prog)
    for seed, c, lr in [(0, 0.01, 5e-5), (7, 0.5, 1e-3), (3, 0.001, 2e-4)]:
        hp = hyper([c, c / 2], lr_critic=lr, lr_gen=lr)
        state = init(jax.random.split(jax.random.key(seed), 2), hp)
        chunk(state, hp, {})
    assert chunk._cache_size() == 1
    assert init._cache_size() == 1


def test_a_diverging_run_is_frozen_and_the_others_go_on():
    prog = tiny_program("constraint.kind=none", "optim.critic.name=sgd")
    init, chunk, _ = compiled(prog)
    key = jax.random.key(5)
    hp = Hyper(
        jnp.array([jnp.inf, jnp.inf], jnp.float32),  # no clipping: the box is unbounded
        jnp.array([1e-3, jnp.inf], jnp.float32),  # run 1's first update is inf * grad
        jnp.array([1e-3, 1e-3], jnp.float32),
        jnp.array([10.0, 10.0], jnp.float32),
    )
    start = init(jnp.stack([key, key]), hp)
    start_critic_1 = jax.tree_util.tree_map(lambda a: np.asarray(a[1]), start.critic)
    state, row = chunk(start, hp, {})
    assert int(row["diverged_step"][0]) == -1
    assert int(row["diverged_step"][1]) == 1
    frozen = jax.tree_util.tree_map(lambda a: np.asarray(a[1]), state.critic)
    for a, b in zip(
        jax.tree_util.tree_leaves(frozen), jax.tree_util.tree_leaves(start_critic_1), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(float(row["w_estimate"][1]))

    solo_hp = jax.tree_util.tree_map(lambda a: a[:1], hp)
    _, alone = chunk(init(key[None], solo_hp), solo_hp, {})
    np.testing.assert_allclose(row["w_estimate"][0], alone["w_estimate"][0], rtol=1e-5)


def test_the_clipped_critic_starts_inside_the_box():
    prog = tiny_program()
    hp = one_run(0.001)
    state = init_run(prog, jax.random.key(0), hp)
    unclipped = prog.critic.init(jax.random.split(jax.random.key(0), 4)[0], jnp.zeros((1, 2)))
    for a, b in zip(
        jax.tree_util.tree_leaves(state.critic), jax.tree_util.tree_leaves(unclipped), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.clip(np.asarray(b), -0.001, 0.001))
