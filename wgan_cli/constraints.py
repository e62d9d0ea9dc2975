"""The weight-clipping constraint as an optax transform, last in the critic's chain.

Putting the projection inside the optimizer chain (rather than clipping after
`apply_updates`) keeps the critic step a single pure `update` / `apply_updates` pair, and
makes "clip after every critic update" impossible to forget anywhere a step is taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax


def clip_to_box(c: jax.Array | float, kernels_only: bool = False) -> optax.GradientTransformation:
    """Rewrite updates so that params + updates lies in [-c, c] for every parameter.

    `c` may be a traced array, so a sweep over c shares one compiled program. With
    kernels_only, only the weight kernels are projected (see is_clipped).
    """

    def init_fn(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(updates: Any, state: optax.EmptyState, params: Any = None):
        if params is None:
            raise ValueError(
                "clip_to_box needs the current params: call update(updates, state, params)"
            )

        def project(path: tuple, u: jax.Array, p: jax.Array) -> jax.Array:
            if not is_clipped(path, kernels_only):
                return u
            return _landing_update(p, u, jnp.asarray(c, p.dtype))

        return jax.tree_util.tree_map_with_path(project, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def clip_params(params: Any, c: jax.Array | float, kernels_only: bool = False) -> Any:
    """Project params themselves into [-c, c] (used once, on the freshly initialised critic)."""

    def project(path: tuple, p: jax.Array) -> jax.Array:
        if not is_clipped(path, kernels_only):
            return p
        return jnp.clip(p, -c, c).astype(p.dtype)

    return jax.tree_util.tree_map_with_path(project, params)


def _landing_update(p: jax.Array, u: jax.Array, c: jax.Array) -> jax.Array:
    """An update u' whose landing point fl(p + u') is clip(p + u, -c, c), or the nearest float
    to it that a single addition to p can reach without leaving the box.

    Where p + u already lies in the box, u' is u itself, so unclipped steps are bit-for-bit
    the optimizer's own. Elsewhere, rounding in (target - p) can make p + u' overshoot c by
    an ulp or more, which would break the promise that every weight lies in [-c, c].
    Rounding of p + u' is monotone in u', so nudging u' one float at a time towards the
    target, never across the box's edge, fixes it; a few nudges cover parameters in or
    near the box (far larger ones still land inside, an ulp of u' from the edge).
    """
    free = p + u
    target = jnp.clip(free, -c, c)
    step = jnp.where(jnp.abs(free) <= c, u, target - p)
    for _ in range(4):
        landed = p + step
        up, down = jnp.nextafter(step, jnp.inf), jnp.nextafter(step, -jnp.inf)
        go_up = (landed < -c) | ((landed < target) & (p + up <= c))
        go_down = (landed > c) | ((landed > target) & (p + down >= -c))
        step = jnp.where(go_up, up, jnp.where(go_down, down, step))
    return step


def is_clipped(path: tuple, kernels_only: bool) -> bool:
    """Whether the parameter at `path` is clipped: every one (the WGAN paper), or with
    kernels_only the weight kernels alone, leaving biases and a normalisation's scale and
    offset free."""
    return not kernels_only or _leaf_name(path) == "kernel"


def parameter_paths(params: Any, kernels_only: bool) -> dict[str, list[str]]:
    """{"clipped": [...], "free": [...]}: "Conv_0/norm/scale"-style paths of the critic's
    parameters on each side of the clip, which the manifest records."""
    sides: dict[str, list[str]] = {"clipped": [], "free": []}
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        sides["clipped" if is_clipped(path, kernels_only) else "free"].append(name)
    return sides


def _leaf_name(path: tuple) -> str:
    last = path[-1] if path else None
    return str(getattr(last, "key", getattr(last, "name", last)))


def interpolates(key: jax.Array, real: jax.Array, fake: jax.Array) -> tuple[jax.Array, jax.Array]:
    """WGAN-GP's random points x̂ = ε x_real + (1 - ε) x_fake, one ε ~ U(0, 1) per sample.

    ε has shape (B, 1, ..., 1), so every coordinate of a sample moves along the same segment.
    """
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    return eps * real + (1.0 - eps) * fake, eps


def gradient_penalty(
    f: Callable[[jax.Array], jax.Array], x_hat: jax.Array, gp_lambda: jax.Array | float
) -> jax.Array:
    """Per-sample two-sided penalty λ (‖∇x f(x̂)‖ - 1)², the norm over all non-batch axes.

    A tiny constant under the root keeps the penalty's own gradient finite where ∇f = 0.
    """
    grads = jax.grad(lambda x: jnp.sum(f(x)))(x_hat)
    sq = jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1)
    return gp_lambda * jnp.square(jnp.sqrt(sq + 1e-12) - 1.0)
