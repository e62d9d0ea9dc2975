"""Flax critics and generators: plain MLPs, as in the WGAN and WGAN-GP toy experiments, and
DCGAN-style convolutional networks (ConvCritic, ConvGenerator) for image data sets.

Every network takes and returns flattened (n, d) arrays, so the training code is the same for
both kinds; the convolutional ones reshape to NHWC inside.

Linen modules keep parameters as plain pytrees, which is what lets a whole sweep be one
`vmap` over a leading run axis of those trees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

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

    def probe_shapes(self, batch: int) -> list[tuple[int, ...]]:
        """The shape of each hidden layer's output for a batch: one probe per hidden layer."""
        return [(batch, self.hidden)] * self.depth


def critic_fn(module: nn.Module, variables: dict) -> Callable[[jax.Array], jax.Array]:
    """f(x): (n, d) -> (n,), the scalar critic value per sample, with frozen statistics."""
    return lambda x: module.apply(variables, x)[:, 0]


# Convolutional (DCGAN-style) networks for image data sets ------------------------------------

#: Every convolution is 4 x 4 with stride 2 and "SAME" padding, as in DCGAN: each halves the
#: spatial size, rounding up (28 -> 14 -> 7 -> 4 -> 2 -> 1; 8 -> 4 -> 2 -> 1), so one kernel
#: size serves 8 x 8 digits and 28 x 28 MNIST alike.
CONV_KERNEL = (4, 4)
CONV_STRIDES = (2, 2)


def _conv_kernel_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Flax's default kernel init, LeCun normal (a normal truncated at ±2 std, scaled to
    variance 1 / fan_in with fan_in = kh * kw * cin), drawn as a flat vector and reshaped.

    The values follow exactly the distribution of ``nn.initializers.lecun_normal()`` on the 4-D
    shape, but XLA on CPU compiles random draws of rank 3 and 4 10-20 times slower than flat
    ones (seconds per layer), a cost every sweep's initialisation would pay.
    """
    fan_in = math.prod(shape[:-1])
    # 0.8796... is the std of a standard normal truncated to [-2, 2], as in flax's init.
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    flat = jax.random.truncated_normal(key, -2.0, 2.0, (math.prod(shape),), dtype)
    return (flat * jnp.asarray(std, dtype)).reshape(shape)


def conv_sizes(image_shape: Sequence[int], depth: int) -> list[tuple[int, int]]:
    """Spatial sizes (h, w) of the image and after each of `depth` stride-2 "SAME" convolutions:
    depth + 1 entries, from (H, W) down; the generator walks the same list back up."""
    h, w = int(image_shape[0]), int(image_shape[1])
    sizes = [(h, w)]
    for _ in range(depth):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


def max_conv_depth(image_shape: Sequence[int]) -> int:
    """The most stride-2 layers before the feature map is 1 x 1 (8 x 8: 3, 28 x 28: 5).

    Deeper convolutional networks are refused: past 1 x 1 a 4 x 4 "SAME" convolution sees
    only its kernel's centre, a Dense layer in disguise."""
    h, w = int(image_shape[0]), int(image_shape[1])
    depth = 0
    while h > 1 or w > 1:
        h, w, depth = -(-h // 2), -(-w // 2), depth + 1
    return depth


def _check_conv(name: str, channels: int, depth: int, image_shape: Sequence[int]) -> None:
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"{name}: image_shape must be (H, W, C) with positive sizes")
    if channels < 1:
        raise ValueError(f"{name}: channels must be positive, got {channels}")
    if not 1 <= depth <= max_conv_depth(image_shape):
        raise ValueError(
            f"{name}: depth must be 1..{max_conv_depth(image_shape)} for "
            f"{image_shape[0]} x {image_shape[1]} images, got {depth}"
        )


def kernel_matrix(kernel: jax.Array) -> jax.Array:
    """A layer's kernel as a matrix: Dense (in, out) as is, a convolution's (kh, kw, cin, cout)
    as (kh * kw * cin, cout), the matrix flax's SpectralNorm normalises. Its singular values
    are those of the map from one receptive-field patch to one output pixel: the standard proxy
    for a convolution's spectrum (the operator norm of the whole convolution can exceed its
    largest singular value by up to a factor sqrt(kh * kw))."""
    return kernel if kernel.ndim == 2 else kernel.reshape(-1, kernel.shape[-1])


class ConvCritic(nn.Module):
    """DCGAN-style critic on flattened images: (n, H*W*C) -> (n, 1), like the MLP critic.

    The input is reshaped to NHWC (row-major (H, W, C), as the data sets flatten it), then
    `depth` 4 x 4 stride-2 "SAME" convolutions with channels, 2 channels, 4 channels, ...
    (layer i has channels * 2**i), each followed by the activation, then a Dense to 1 on the
    flattened last feature map. No normalisation (WGAN-GP: batch norm breaks the per-sample
    gradient penalty). Parameters are Conv_0 .. Conv_{depth-1}, Dense_0, which natural sort
    puts in network order. `spectral` and `update_stats` as in MLP; `probes` are added to each
    convolution's activated output, shapes from `probe_shapes`. The default activation is
    flax's leaky_relu, slope 0.01 (DCGAN used 0.2), the same function the MLP's leaky_relu is.
    """

    channels: int
    depth: int
    image_shape: tuple[int, int, int]
    activation: str = "leaky_relu"
    spectral: bool = False

    def probe_shapes(self, batch: int) -> list[tuple[int, ...]]:
        """The shape of each hidden layer's output for a batch: one probe per convolution."""
        return [
            (batch, h, w, self.channels * 2**i)
            for i, (h, w) in enumerate(conv_sizes(self.image_shape, self.depth)[1:])
        ]

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        update_stats: bool = False,
        probes: Sequence[jax.Array] | None = None,
    ) -> jax.Array:
        _check_conv("ConvCritic", self.channels, self.depth, self.image_shape)
        act = ACTIVATION_FNS[self.activation]

        def apply(layer: nn.Module, h: jax.Array) -> jax.Array:
            return (
                nn.SpectralNorm(layer)(h, update_stats=update_stats) if self.spectral else layer(h)
            )

        h = x.reshape((x.shape[0], *self.image_shape))
        for i in range(self.depth):
            conv = nn.Conv(
                self.channels * 2**i,
                CONV_KERNEL,
                CONV_STRIDES,
                padding="SAME",
                kernel_init=_conv_kernel_init,
            )
            h = act(apply(conv, h))
            if probes is not None:
                h = h + probes[i]
        return apply(nn.Dense(1), h.reshape((h.shape[0], -1)))


class ConvGenerator(nn.Module):
    """DCGAN-style generator: noise (n, noise_dim) -> flattened images (n, H*W*C) in [-1, 1].

    The critic run backwards: a Dense to the critic's last feature map (the size after `depth`
    halvings, channels * 2**(depth-1) channels) with relu, then `depth` 4 x 4 stride-2 "SAME"
    transposed convolutions, each doubling the size and then cropped (bottom and right) to the
    critic's size at that level, so the output is exactly H x W: 28 x 28 at depth 3 goes
    4 -> 8, cropped to 7 -> 14 -> 28; 8 x 8 at depth 3 goes 1 -> 2 -> 4 -> 8. Channels halve
    on the way up; the last layer outputs C channels and tanh. No batch norm: the training code
    optimises every variable of the generator, and batch statistics are not parameters.
    Layers are named Dense_0, Up_0 .. Up_{depth-1}, in network order under natural sort.
    """

    channels: int
    depth: int
    image_shape: tuple[int, int, int]
    noise_dim: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        _check_conv("ConvGenerator", self.channels, self.depth, self.image_shape)
        sizes = conv_sizes(self.image_shape, self.depth)
        top_h, top_w = sizes[-1]
        top_c = self.channels * 2 ** (self.depth - 1)
        h = nn.relu(nn.Dense(top_h * top_w * top_c, name="Dense_0")(z))
        h = h.reshape((z.shape[0], top_h, top_w, top_c))
        for i in range(self.depth):
            last = i == self.depth - 1
            out_c = self.image_shape[2] if last else self.channels * 2 ** (self.depth - 2 - i)
            up = nn.ConvTranspose(
                out_c,
                CONV_KERNEL,
                CONV_STRIDES,
                padding="SAME",
                kernel_init=_conv_kernel_init,
                name=f"Up_{i}",
            )
            target_h, target_w = sizes[self.depth - 1 - i]
            h = up(h)[:, :target_h, :target_w, :]
            h = jnp.tanh(h) if last else nn.relu(h)
        return h.reshape((z.shape[0], -1))
