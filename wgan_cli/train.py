"""The training loop: pure functions over a run's state, vmapped over runs, scanned over steps.

One *group* of runs (same shapes, different c / learning rates / seeds) is one compiled
program. Per-run values live in `Hyper` arrays with a leading run axis, so a new c or seed
reuses the compiled program. The host sees only what `train_chunk` returns: one row of
diagnostics per run every `log_every` generator steps.

Loss convention: the critic minimises mean f(fake) - mean f(real); the generator minimises
-mean f(fake); w_estimate = mean f(real) - mean f(fake) on held-out samples.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wgan_cli import metrics
from wgan_cli.config import Config
from wgan_cli.constraints import (
    clip_params,
    clip_to_box,
    gradient_penalty,
    interpolates,
    parameter_paths,
)
from wgan_cli.data import DataSpec, sample_heldout, sample_train
from wgan_cli.errors import WganError
from wgan_cli.models import MLP, ConvCritic, ConvGenerator, critic_fn, kernel_matrix, max_conv_depth

#: Histogram bin edges in units of the scale (c under clipping): bins centred on -c, 0 and +c.
HIST_EDGES_REL = np.linspace(-1.025, 1.025, 42)

Critic = MLP | ConvCritic


@dataclass(frozen=True)
class Program:
    """Everything static about a group: shapes, data set and which code paths run.

    It is hashable, so one jitted function per distinct Program is compiled and cached.
    `family` is the code path: "box" projects the critic into [-c, c] after every update
    (clip runs, and none runs with c = inf, so the two arms share one program), "gp" adds the
    gradient penalty, "sn" spectrally normalises every critic layer.
    """

    data: DataSpec
    critic: Critic
    generator: MLP | ConvGenerator
    noise_dim: int
    batch_size: int
    n_critic: int
    log_every: int
    eval_samples: int
    family: str
    clip_kernels_only: bool
    critic_opt: str
    gen_opt: str
    critic_only: bool = False
    fake_noise_std: float = 1.0

    @classmethod
    def from_config(cls, cfg: Config, data: DataSpec) -> Program:
        return cls(
            data=data,
            critic=build_critic(cfg, data),
            generator=build_generator(cfg, data),
            noise_dim=cfg.generator.noise_dim,
            batch_size=cfg.train.batch_size,
            n_critic=cfg.train.n_critic,
            log_every=cfg.train.log_every,
            eval_samples=cfg.train.eval_samples,
            family=FAMILIES[cfg.constraint.kind],
            clip_kernels_only=cfg.constraint.clip == "kernels",
            critic_opt=cfg.optim.critic.name,
            gen_opt=cfg.optim.generator.name,
            critic_only=cfg.train.critic_only,
            fake_noise_std=cfg.train.fake_noise_std,
        )


def build_critic(cfg: Config, data: DataSpec) -> Critic:
    """The configured critic, spectrally normalised in the sn arm."""
    spectral = cfg.constraint.kind == "sn"
    net = cfg.critic
    if net.kind == "mlp":
        return MLP(net.hidden, net.depth, 1, net.activation, spectral=spectral)
    image_shape = _conv_image_shape("critic", net.depth, data)
    return ConvCritic(
        net.channels, net.depth, image_shape, net.activation, spectral=spectral, norm=net.norm
    )


def build_generator(cfg: Config, data: DataSpec) -> MLP | ConvGenerator:
    """The configured generator; an MLP ends in tanh for data that lives in [-1, 1]."""
    net = cfg.generator
    if net.kind == "mlp":
        return MLP(net.hidden, net.depth, data.dim, net.activation, squash=data.bounded)
    image_shape = _conv_image_shape("generator", net.depth, data)
    return ConvGenerator(net.channels, net.depth, image_shape, net.noise_dim)


def _conv_image_shape(net: str, depth: int, data: DataSpec) -> tuple[int, int, int]:
    """The images' (H, W, C), once depth stride-2 layers are known to fit them."""
    if data.image_shape is None:
        raise WganError(f"{net}.kind conv needs an image data set, not {data.name}")
    deepest = max_conv_depth(data.image_shape)
    if depth > deepest:
        h, w, _ = data.image_shape
        raise WganError(
            f"{net}.depth {depth} is too deep for {h} x {w} images: a conv {net} takes at most "
            f"{deepest} stride-2 layers before the feature map is 1 x 1"
        )
    return data.image_shape


#: The program family of each constraint arm (see Program).
FAMILIES = {"clip": "box", "none": "box", "gp": "gp", "sn": "sn"}


class Hyper(NamedTuple):
    """Per-run hyperparameters: traced scalars, never baked into the compiled program.

    c is +inf for runs without clipping; gp_lambda matters only to the gp family.
    """

    c: jax.Array
    lr_critic: jax.Array
    lr_gen: jax.Array
    gp_lambda: jax.Array


class RunState(NamedTuple):
    critic: Any  # flax variables: "params", plus "batch_stats" (power iteration) under sn
    gen: Any
    critic_opt: Any
    gen_opt: Any
    key: jax.Array
    eval_key: jax.Array
    step: jax.Array  # generator iterations done
    critic_updates: jax.Array
    diverged_step: jax.Array  # first generator step with a non-finite loss; -1 while healthy


def make_optimizer(name: str, lr: jax.Array) -> optax.GradientTransformation:
    """The named optimizer with a traced learning rate.

    RMSProp matches PyTorch's (decay 0.99, eps 1e-8 outside the root), which the WGAN paper's
    code used; Adam uses WGAN-GP's code's betas (0.5, 0.9).
    """
    if name == "rmsprop":
        return optax.rmsprop(lr, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    if name == "adam":
        return optax.adam(lr, b1=0.5, b2=0.9)
    if name == "sgd":
        return optax.sgd(lr)
    raise ValueError(f"unknown optimizer {name!r}")


def critic_tx(prog: Program, hp: Hyper) -> optax.GradientTransformation:
    """The critic's chain: its optimizer, then (box family) the projection, always last."""
    opt = make_optimizer(prog.critic_opt, hp.lr_critic)
    if prog.family == "box":
        return optax.chain(opt, clip_to_box(hp.c, prog.clip_kernels_only))
    return opt


def gen_tx(prog: Program, hp: Hyper) -> optax.GradientTransformation:
    return make_optimizer(prog.gen_opt, hp.lr_gen)


def init_run(prog: Program, key: jax.Array, hp: Hyper) -> RunState:
    """Fresh networks and optimizer states; under clipping the critic starts inside the box.

    Only "params" are ever optimised or clipped; sn's power-iteration statistics are not.
    """
    k_critic, k_gen, k_train, k_eval = jax.random.split(key, 4)
    critic = dict(prog.critic.init(k_critic, jnp.zeros((1, prog.data.dim))))
    if prog.family == "box":
        critic["params"] = clip_params(critic["params"], hp.c, prog.clip_kernels_only)
    gen = prog.generator.init(k_gen, jnp.zeros((1, prog.noise_dim)))
    zero = jnp.zeros((), jnp.int32)
    return RunState(
        critic=critic,
        gen=gen,
        critic_opt=critic_tx(prog, hp).init(critic["params"]),
        gen_opt=gen_tx(prog, hp).init(gen),
        key=k_train,
        eval_key=k_eval,
        step=zero,
        critic_updates=zero,
        diverged_step=zero - 1,
    )


def clip_coverage(prog: Program) -> dict[str, list[str]]:
    """Which critic parameters the clip touches and which it leaves free (a normalisation's
    scale and offset among them, or not, as constraint.clip says), for the manifest. Variables
    outside "params" (running statistics, sn's power-iteration vectors) are never clipped."""
    shapes = jax.eval_shape(prog.critic.init, jax.random.key(0), jnp.zeros((1, prog.data.dim)))
    paths = parameter_paths(shapes["params"], prog.clip_kernels_only)
    return {**paths, "never_clipped_collections": sorted(k for k in shapes if k != "params")}


def critic_loss(prog: Program, critic: Any, real: jax.Array, fake: jax.Array) -> jax.Array:
    """mean f(fake) - mean f(real): one forward pass over both halves."""
    return _critic_objective(prog, None, critic, real, fake, None)[0]


def _critic_objective(
    prog: Program,
    hp: Hyper | None,
    critic: Any,
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array | None,
) -> tuple[jax.Array, dict]:
    """What the critic minimises, and (sn) its advanced power-iteration statistics.

    The loss is mean f(fake) - mean f(real), plus the mean gradient penalty in the gp family;
    both extras apply only in a training step, which passes a key.
    """
    x = jnp.concatenate([real, fake])
    if prog.family == "sn" and key is not None:
        out, stats = prog.critic.apply(critic, x, update_stats=True, mutable=["batch_stats"])
    else:
        out, stats = prog.critic.apply(critic, x), {}
    n = real.shape[0]
    loss = out[n:, 0].mean() - out[:n, 0].mean()
    if prog.family == "gp" and key is not None:
        x_hat, _ = interpolates(key, real, fake)
        f = critic_fn(prog.critic, critic)
        loss = loss + gradient_penalty(f, x_hat, hp.gp_lambda).mean()
    return loss, dict(stats)


def generate(prog: Program, gen: Any, key: jax.Array, n: int) -> jax.Array:
    z = jax.random.normal(key, (n, prog.noise_dim))
    return prog.generator.apply(gen, z)


def fake_batch(prog: Program, gen: Any, arrays: dict, key: jax.Array, n: int) -> jax.Array:
    """The critic's fake samples: the generator's, or in critic-only mode (WGAN-GP Section 3)
    a fixed "generator" that returns real data plus N(0, σ²) noise."""
    if not prog.critic_only:
        return generate(prog, gen, key, n)
    k_real, k_noise = jax.random.split(key)
    real = sample_train(prog.data, arrays, k_real, n)
    return real + prog.fake_noise_std * jax.random.normal(k_noise, real.shape)


def critic_step(
    prog: Program, hp: Hyper, arrays: dict, state: RunState, key: jax.Array
) -> tuple[RunState, jax.Array]:
    k_real, k_fake, k_penalty = jax.random.split(key, 3)
    real = sample_train(prog.data, arrays, k_real, prog.batch_size)
    fake = jax.lax.stop_gradient(fake_batch(prog, state.gen, arrays, k_fake, prog.batch_size))

    def objective(params: Any) -> tuple[jax.Array, dict]:
        critic = {**state.critic, "params": params}
        return _critic_objective(prog, hp, critic, real, fake, k_penalty)

    params = state.critic["params"]
    (loss, stats), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt = critic_tx(prog, hp).update(grads, state.critic_opt, params)
    critic = {**state.critic, **stats, "params": optax.apply_updates(params, updates)}
    return state._replace(critic=critic, critic_opt=opt), loss


def generator_step(
    prog: Program, hp: Hyper, state: RunState, key: jax.Array
) -> tuple[RunState, jax.Array]:
    def loss_fn(gen: Any) -> jax.Array:
        fake = generate(prog, gen, key, prog.batch_size)
        return -critic_fn(prog.critic, state.critic)(fake).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.gen)
    updates, opt = gen_tx(prog, hp).update(grads, state.gen_opt, state.gen)
    return state._replace(gen=optax.apply_updates(state.gen, updates), gen_opt=opt), loss


def generator_iteration(
    prog: Program, hp: Hyper, arrays: dict, state: RunState
) -> tuple[RunState, jax.Array]:
    """n_critic clipped critic updates, then one generator update (none in critic-only mode).

    A run whose loss turns non-finite keeps its last finite state from then on (its updates
    are masked off) and records the step, so one diverging c cannot poison the group.
    """
    key, k_critic, k_gen = jax.random.split(state.key, 3)
    new, critic_losses = jax.lax.scan(
        lambda s, k: critic_step(prog, hp, arrays, s, k),
        state._replace(key=key),
        jax.random.split(k_critic, prog.n_critic),
    )
    if prog.critic_only:
        gen_loss = jnp.float32(jnp.nan)
        finite = jnp.isfinite(critic_losses[-1])
    else:
        new, gen_loss = generator_step(prog, hp, new, k_gen)
        finite = jnp.isfinite(critic_losses[-1]) & jnp.isfinite(gen_loss)
    losses = jnp.stack([critic_losses[-1], gen_loss])
    healthy = (state.diverged_step < 0) & finite
    new = new._replace(step=state.step + 1, critic_updates=state.critic_updates + prog.n_critic)
    frozen = state._replace(
        diverged_step=jnp.where(state.diverged_step < 0, state.step + 1, state.diverged_step)
    )
    out = jax.tree_util.tree_map(lambda a, b: jnp.where(healthy, a, b), new, frozen)
    return out, losses


def evaluate(prog: Program, hp: Hyper, arrays: dict, state: RunState) -> dict[str, jax.Array]:
    """Diagnostics on held-out samples, drawn from an eval key stream apart from training's.

    Keeping evaluation off the training key stream means log_every never changes a run.
    """
    k_real, k_fake, k_mix = jax.random.split(jax.random.fold_in(state.eval_key, state.step), 3)
    real = sample_heldout(prog.data, arrays, k_real, prog.eval_samples)
    fake = fake_batch(prog, state.gen, arrays, k_fake, real.shape[0])
    f = critic_fn(prog.critic, state.critic)
    params = state.critic["params"]
    abs_mean, abs_max = metrics.weight_abs_stats(params)
    act_norms, weight_norms = layer_gradient_norms(prog, state.critic, real, fake)
    row = {
        "w_estimate": f(real).mean() - f(fake).mean(),
        "clip_frac": metrics.clip_fraction(params, hp.c),
        "weight_abs_mean": abs_mean,
        "weight_abs_max": abs_max,
        "layer_act_grad_norm": act_norms,
        "layer_weight_grad_norm": weight_norms,
        "layer_clip_frac": metrics.layer_clip_fractions(params, hp.c),
        "histograms": layer_histograms(hp, params),
        "real": real,
        "fake": fake,
    }
    points = {"real": real, "fake": fake, "interp": interpolates(k_mix, real, fake)[0]}
    for name, x in points.items():
        norms = metrics.input_grad_norms(f, x)
        row[f"grad_norm_{name}"], row[f"grad_norm_{name}_max"] = norms.mean(), norms.max()
    if prog.data.modes is not None:
        row["modes_covered"] = metrics.modes_covered(fake, prog.data.modes, prog.data.mode_std)
        row["high_quality_frac"] = metrics.high_quality_frac(
            fake, prog.data.modes, prog.data.mode_std
        )
    return row


def layer_gradient_norms(
    prog: Program, critic: Any, real: jax.Array, fake: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Norms of the W loss's gradient w.r.t. each hidden layer's activations and each layer's
    weights (kernel and bias): WGAN-GP Fig. 1b's view of gradients vanishing or exploding
    with depth. Activations are probed with zero arrays added to each layer's output."""
    x = jnp.concatenate([real, fake])
    n = real.shape[0]
    probes = [jnp.zeros(shape) for shape in prog.critic.probe_shapes(x.shape[0])]

    def loss(params: Any, probes: list[jax.Array]) -> jax.Array:
        out = prog.critic.apply({**critic, "params": params}, x, probes=probes)[:, 0]
        return out[n:].mean() - out[:n].mean()

    d_params, d_probes = jax.grad(loss, argnums=(0, 1))(critic["params"], probes)
    act = jnp.stack([jnp.linalg.norm(g) for g in d_probes])
    weights = jnp.stack(
        [
            jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(layer)))
            for _, layer in metrics.layers_in_order(d_params)
        ]
    )
    return act, weights


def layer_histograms(hp: Hyper, params: Any) -> jax.Array:
    """Per-layer weight histograms in units of c (of the largest weight without clipping)."""
    scale = jnp.where(jnp.isfinite(hp.c), hp.c, metrics.weight_abs_stats(params)[1])
    return metrics.layer_histograms(params, scale, HIST_EDGES_REL)


def train_chunk(
    prog: Program, state: RunState, hp: Hyper, arrays: dict
) -> tuple[RunState, dict[str, jax.Array]]:
    """log_every generator iterations in one scan, then one row of diagnostics."""
    state, losses = jax.lax.scan(
        lambda s, _: generator_iteration(prog, hp, arrays, s), state, None, prog.log_every
    )
    row = evaluate(prog, hp, arrays, state)
    row["critic_loss"] = losses[:, 0].mean()
    row["gen_loss"] = losses[:, 1].mean()
    row["step"] = state.step
    row["critic_updates"] = state.critic_updates
    row["diverged_step"] = state.diverged_step
    return state, row


#: The square on which 2-D critics' value surfaces are drawn (every built-in 2-D set fits).
SURFACE_AXIS = np.linspace(-2.2, 2.2, 64)


def final_arrays(prog: Program, state: RunState) -> dict[str, Any]:
    """What the end-of-group diagnostics need from the device: each critic weight matrix
    and, for 2-D data, the critic's value on a grid (its value surface)."""
    params = state.critic["params"]
    out: dict[str, Any] = {
        "kernels": [kernel_matrix(layer["kernel"]) for _, layer in metrics.layers_in_order(params)]
    }
    if prog.data.dim == 2:
        gx, gy = np.meshgrid(SURFACE_AXIS, SURFACE_AXIS)
        grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=1), jnp.float32)
        out["surface"] = critic_fn(prog.critic, state.critic)(grid).reshape(gx.shape)
    return out


def with_singular_values(arrays: dict[str, Any]) -> dict[str, Any]:
    """The final arrays on the host, each weight matrix replaced by its singular values (rank
    collapse under clipping). numpy computes them: on CPU, a compiled program that holds
    LAPACK's SVD beside other work hung on its second call (every XLA thread idle) when the
    runs were sharded over two host devices, and this is milliseconds once per group."""
    host = jax.device_get(arrays)
    kernels = host.pop("kernels")
    return {**host, "singular_values": [np.linalg.svd(k, compute_uv=False) for k in kernels]}


@functools.lru_cache(maxsize=32)
def compiled(prog: Program) -> tuple[Callable, Callable, Callable]:
    """(init, chunk, final) for a group: jit over vmap over the leading run axis.

    Cached per Program, so every sweep of the same shapes in this process reuses the
    compiled code whatever its c, learning rates or seeds.
    """
    init = jax.jit(jax.vmap(functools.partial(init_run, prog)))
    # No buffer donation: the state a chunk starts from is checkpointed while it runs.
    chunk = jax.jit(jax.vmap(functools.partial(train_chunk, prog), in_axes=(0, 0, None)))
    arrays = jax.jit(jax.vmap(functools.partial(final_arrays, prog)))
    return init, chunk, lambda state: with_singular_values(arrays(state))
