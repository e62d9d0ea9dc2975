"""The comparison arms: gradient penalty, spectral normalisation and no constraint."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from typer.testing import CliRunner

from wgan_cli.cli import app
from wgan_cli.config import load_raw
from wgan_cli.constraints import gradient_penalty, interpolates
from wgan_cli.errors import WganError
from wgan_cli.models import MLP
from wgan_cli.sweep import Grid, check_grid, expand, group_runs
from wgan_cli.train import Hyper, Program, critic_tx, make_optimizer


def test_penalty_of_a_linear_critic_on_images_is_lambda_times_norm_minus_one_squared():
    # f(x) = w.x over all 16 pixels, ||w|| = 2: the gradient is w everywhere, so each
    # sample's penalty is 10 * (2 - 1)^2 = 10. A norm over the channel axis alone would
    # see per-pixel gradients of size 0.5 and give other numbers.
    w = jnp.full((1, 4, 4), 0.5)  # sqrt(16 * 0.25) = 2
    f = lambda x: jnp.sum(x * w, axis=(1, 2, 3))  # noqa: E731
    x_hat = jax.random.normal(jax.random.key(0), (6, 1, 4, 4))
    np.testing.assert_allclose(np.asarray(gradient_penalty(f, x_hat, 10.0)), 10.0, rtol=1e-5)


@pytest.mark.parametrize("shape", [(8, 1, 4, 4), (8, 2)])
def test_interpolates_draw_one_epsilon_per_sample_on_the_segment(shape):
    k_real, k_fake, k_eps = jax.random.split(jax.random.key(1), 3)
    real, fake = jax.random.normal(k_real, shape), jax.random.normal(k_fake, shape) + 3
    x_hat, eps = interpolates(k_eps, real, fake)
    assert eps.shape == (shape[0],) + (1,) * (len(shape) - 1)
    assert np.all((np.asarray(eps) >= 0) & (np.asarray(eps) <= 1))
    np.testing.assert_allclose(x_hat, fake + eps * (real - fake), rtol=1e-5, atol=1e-5)


def test_spectral_norm_makes_every_layer_top_singular_value_one():
    critic = MLP(32, 3, 1, spectral=True)
    x = jax.random.normal(jax.random.key(2), (16, 2))
    variables = critic.init(jax.random.key(3), x)
    step = jax.jit(lambda v: critic.apply(v, x, update_stats=True, mutable=["batch_stats"])[1])
    for _ in range(50):  # power iterations
        variables = {**variables, **step(variables)}
    stats = variables["batch_stats"]
    for i in range(4):
        kernel = np.asarray(variables["params"][f"Dense_{i}"]["kernel"], np.float64)
        sigma = float(stats[f"SpectralNorm_{i}"][f"Dense_{i}/kernel/sigma"])
        top = np.linalg.svd(kernel / sigma, compute_uv=False)[0]
        assert top == pytest.approx(1.0, rel=0.01)
    assert "batch_stats" not in jax.tree_util.tree_map(jnp.shape, variables["params"])


def test_none_arm_critic_updates_are_exactly_the_optimizers():
    cfg_raw = load_raw(None, ["constraint.kind=none", "critic.hidden=8"])
    (run,) = expand(cfg_raw, Grid())
    prog = Program.from_config(run.config, _spec())
    hp = Hyper(*(jnp.float32(v) for v in (jnp.inf, 5e-5, 5e-5, 10.0)))  # none: c = inf
    chain, alone = critic_tx(prog, hp), make_optimizer("rmsprop", hp.lr_critic)
    params = {"w": jax.random.normal(jax.random.key(4), (64,))}
    s_chain, s_alone, p_chain, p_alone = chain.init(params), alone.init(params), params, params
    for i in range(5):
        grads = {"w": jax.random.normal(jax.random.key(10 + i), (64,)) * 10.0**i}
        u, s_chain = chain.update(grads, s_chain, p_chain)
        v, s_alone = alone.update(grads, s_alone, p_alone)
        p_chain, p_alone = optax.apply_updates(p_chain, u), optax.apply_updates(p_alone, v)
    np.testing.assert_array_equal(np.asarray(p_chain["w"]), np.asarray(p_alone["w"]))


def _spec():
    from wgan_cli import data

    return data.load("swissroll")[0]


def test_a_sweep_spans_arms_settings_and_seeds():
    raw = load_raw(None, [])
    grid = Grid(["clip", "gp", "sn", "none"], [0.001, 0.01, 0.1], [1.0, 10.0], [0, 1])
    runs = expand(raw, grid)
    kinds = [r.config.constraint.kind for r in runs]
    assert kinds.count("clip") == 6 and kinds.count("gp") == 4
    assert kinds.count("sn") == 2 and kinds.count("none") == 2
    assert len({r.run_id for r in runs}) == len(runs)
    for r in runs:
        name, lr = r.config.optim.critic.name, r.config.optim.critic.lr
        expected = ("adam", 1e-4) if r.config.constraint.kind in ("gp", "sn") else ("rmsprop", 5e-5)
        assert (name, lr) == expected
    # clip and none share the box program (none has c = inf); gp and sn have their own.
    groups = group_runs(runs)
    assert sorted(len(g) for g in groups) == [2, 4, 8]


def test_the_users_optimizer_wins_over_an_arms_default():
    raw = load_raw(None, ["optim.critic.lr=3e-4"])
    (gp,) = expand(raw, Grid(arms=["gp"]))
    assert gp.config.optim.critic.name == "adam"  # the arm's default ...
    assert gp.config.optim.critic.lr == 3e-4  # ... under the user's own setting


@pytest.mark.parametrize(
    ("grid", "needle"),
    [
        (Grid(arms=["gp"], cs=[0.1]), "--c applies to the clip arm"),
        (Grid(arms=["clip"], gp_lambdas=[10.0]), "--gp-lambda applies to the gp arm"),
        (Grid(arms=["clip", "lp"]), "unknown arm 'lp'"),
        (Grid(arms=["sn", "sn"]), "appears twice"),
    ],
)
def test_sweep_options_no_arm_uses_are_refused(grid, needle):
    with pytest.raises(WganError, match=needle):
        check_grid({}, grid)


def test_config_settings_no_arm_uses_warn():
    raw = load_raw(None, ["constraint.c=0.05", "constraint.gp_lambda=5"])
    warnings = check_grid(raw, Grid(arms=["gp", "sn"]))
    assert any("constraint.c" in w for w in warnings)
    assert not any("gp_lambda" in w for w in warnings)
    momentum = check_grid(load_raw(None, ["optim.critic.name=adam"]), Grid(arms=["clip"]))
    assert any("momentum" in w for w in momentum)
    assert check_grid({}, Grid(arms=["clip", "none"], cs=[0.01])) == []


def test_all_four_arms_in_one_command(tmp_path):
    sets = ["critic.hidden=8", "generator.hidden=8", "train.batch_size=16"]
    sets += ["train.eval_samples=50", "train.steps=4", "train.log_every=2"]
    out = tmp_path / "arms"
    args = ["sweep", "--constraint", "clip,gp,sn,none", "--c", "0.01,0.1", "--gp-lambda", "10"]
    args += [a for s in sets for a in ("--set", s)] + ["--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs.constraint) == ["clip", "clip", "gp", "none", "sn"]
    assert runs.loc[runs.constraint == "gp", "gp_lambda"].item() == 10.0
    assert runs.loc[runs.constraint != "clip", "c"].isna().all()
    assert (runs.status == "done").all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert np.isfinite(metrics[["w_estimate", "w1_true", "grad_norm_real"]].to_numpy()).all()
    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, (report.output, report.exception)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.arm) == ["clip c=0.01", "clip c=0.1", "gp λ=10", "sn", "none"]
