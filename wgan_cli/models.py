"""Flax critic and generator: plain MLPs, as in the WGAN and WGAN-GP toy experiments.

Linen modules keep parameters as plain pytrees, which is what lets a whole sweep be one
`vmap` over a leading run axis of those trees.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATION_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "leaky_relu": nn.leaky_relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
}


class MLP(nn.Module):
    """`depth` hidden Dense layers of `hidden` units, then a linear Dense to `out_dim`.

    Layers are named Dense_0 .. Dense_depth, so per-layer diagnostics can index them in order.
    `squash` ends in tanh, for data that lives in [-1, 1].
    """

    hidden: int
    depth: int
    out_dim: int
    activation: str = "relu"
    squash: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATION_FNS[self.activation]
        for _ in range(self.depth):
            x = act(nn.Dense(self.hidden)(x))
        x = nn.Dense(self.out_dim)(x)
        return jnp.tanh(x) if self.squash else x


def critic_fn(module: MLP, params: dict) -> Callable[[jax.Array], jax.Array]:
    """f(x): (n, d) -> (n,), the scalar critic value per sample."""
    return lambda x: module.apply(params, x)[:, 0]
