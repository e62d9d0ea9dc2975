"""Flax critic and generator: plain MLPs, as in the WGAN and WGAN-GP toy experiments.

Linen modules keep parameters as plain pytrees, which is what lets a whole sweep be one
`vmap` over a leading run axis of those trees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    `squash` ends in tanh, for data that lives in [-1, 1]. `spectral` wraps every layer in
    flax's SpectralNorm, whose power-iteration vectors live in the "batch_stats" collection,
    apart from the trainable "params", and advance only when update_stats is true.
    """

    hidden: int
    depth: int
    out_dim: int
    activation: str = "relu"
    squash: bool = False
    spectral: bool = False

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        update_stats: bool = False,
        probes: Sequence[jax.Array] | None = None,
    ) -> jax.Array:
        """`probes`, one zero array per hidden layer, are added to that layer's output: the
        gradient with respect to a probe is the gradient with respect to the activations."""
        act = ACTIVATION_FNS[self.activation]
        for i in range(self.depth + 1):
            layer = nn.Dense(self.hidden if i < self.depth else self.out_dim)
            x = nn.SpectralNorm(layer)(x, update_stats=update_stats) if self.spectral else layer(x)
            if i < self.depth:
                x = act(x)
                if probes is not None:
                    x = x + probes[i]
        return jnp.tanh(x) if self.squash else x


def critic_fn(module: MLP, variables: dict) -> Callable[[jax.Array], jax.Array]:
    """f(x): (n, d) -> (n,), the scalar critic value per sample, with frozen statistics."""
    return lambda x: module.apply(variables, x)[:, 0]
