"""Flax critics and generators: plain MLPs, as in the WGAN and WGAN-GP toy experiments, and
DCGAN-style convolutional networks (ConvCritic, ConvGenerator) for image data sets.

Every network takes and returns flattened (n, d) arrays, so the training code is the same for
both kinds; the convolutional ones reshape to NHWC inside.

Linen modules keep parameters as plain pytrees, which is what lets a whole sweep be one
`vmap` over a leading run axis of those trees.
"""

from __future__ import annotations

import functools
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


def _conv_kernel_init(
    key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32, inputs_seen: float = 1.0
) -> jax.Array:
    """Flax's default kernel init, LeCun normal (a normal truncated at ±2 std, scaled to
    variance 1 / fan_in with fan_in = kh * kw * cin), drawn as a flat vector and reshaped.
    `inputs_seen` < 1 counts only the share of the window that holds real inputs (see
    PatchConv's transposed case), so the layer keeps its input's scale.

    The values follow exactly the distribution of ``nn.initializers.lecun_normal()`` on the 4-D
    shape, but XLA on CPU compiles random draws of rank 3 and 4 10-20 times slower than flat
    ones (seconds per layer), a cost every sweep's initialisation would pay.
    """
    fan_in = math.prod(shape[:-1]) * inputs_seen
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


def _patches(x: jax.Array, pads: Sequence[tuple[int, int]], stride: int) -> jax.Array:
    """(n, H, W, C) -> (n, H', W', kh * kw * C): every 4 x 4 window, flattened in the order
    of a (kh, kw, cin, cout) kernel's first three axes, by slicing alone."""
    x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    kh, kw = CONV_KERNEL
    h_out = (x.shape[1] - kh) // stride + 1
    w_out = (x.shape[2] - kw) // stride + 1
    windows = [
        x[:, i : i + (h_out - 1) * stride + 1 : stride, j : j + (w_out - 1) * stride + 1 : stride]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.stack(windows, axis=3).reshape(x.shape[0], h_out, w_out, -1)


class PatchConv(nn.Module):
    """A 4 x 4 stride-2 "SAME" convolution (or, with `transpose`, transposed convolution) as
    window extraction plus one matrix product: numerically flax's nn.Conv / nn.ConvTranspose
    with the same "kernel" (kh, kw, cin, cout) and "bias" parameters.

    Why not nn.Conv: a sweep vmaps the critic over runs, each with its own kernel, and JAX
    batches such a convolution into a grouped convolution, which XLA's CPU backend runs several
    times slower than the equivalent batched matrix product this module lowers to.
    """

    features: int
    transpose: bool = False
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        # A transposed convolution's window over the zero-spread input holds only one real input
        # in stride**2 positions; LeCun's fan_in over the whole window would shrink the signal
        # about that much per layer, leaving a 3-layer generator's first images nearly equal.
        seen = 1.0 / math.prod(CONV_STRIDES) if self.transpose else 1.0
        init = functools.partial(_conv_kernel_init, inputs_seen=seen)
        kernel = self.param("kernel", init, (*CONV_KERNEL, cin, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        stride = CONV_STRIDES[0]
        if self.transpose:
            # lax.conv_transpose: zeros between the inputs, then a stride-1 correlation with
            # its "SAME" padding (k + s - 2 in all, ceil half before), which doubles the size.
            n, h, w, _ = x.shape
            spread = jnp.zeros((n, (h - 1) * stride + 1, (w - 1) * stride + 1, cin), x.dtype)
            x = spread.at[:, ::stride, ::stride].set(x)
            total = [k + stride - 2 for k in CONV_KERNEL]
            pads = [(-(-t // 2), t - -(-t // 2)) for t in total]
            windows = _patches(x, pads, 1)
        else:
            pads = jax.lax.padtype_to_pads(x.shape[1:3], CONV_KERNEL, CONV_STRIDES, "SAME")
            windows = _patches(x, pads, stride)
        y = windows @ kernel.reshape(-1, self.features) + bias
        if self.layer_norm:
            # Per sample over (H, W, C), with a scale and offset per channel: WGAN-GP's
            # suggested stand-in for batch norm, which would couple a batch's samples.
            y = nn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=-1, name="norm")(y)
        return y


class ConvCritic(nn.Module):
    """DCGAN-style critic on flattened images: (n, H*W*C) -> (n, 1), like the MLP critic.

    The input is reshaped to NHWC (row-major (H, W, C), as the data sets flatten it), then
    `depth` 4 x 4 stride-2 "SAME" convolutions with channels, 2 channels, 4 channels, ...
    (layer i has channels * 2**i), each followed by the activation, then a Dense to 1 on the
    flattened last feature map. No normalisation unless `norm` is "layer": a LayerNorm inside
    each convolution's scope (Conv_i/norm), never batch norm (WGAN-GP: it breaks the per-sample
    gradient penalty; and it has running statistics, which are not parameters). Parameters
    are Conv_0 .. Conv_{depth-1}, Dense_0, which natural sort puts in network order.
    `spectral` and `update_stats` as in MLP; `probes` are added to each convolution's activated
    output, shapes from `probe_shapes`. The default activation is
    flax's leaky_relu, slope 0.01 (DCGAN used 0.2), the same function the MLP's leaky_relu is.
    """

    channels: int
    depth: int
    image_shape: tuple[int, int, int]
    activation: str = "leaky_relu"
    spectral: bool = False
    norm: str = "none"

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
            conv = PatchConv(
                self.channels * 2**i, layer_norm=self.norm == "layer", name=f"Conv_{i}"
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
            up = PatchConv(out_c, transpose=True, name=f"Up_{i}")
            target_h, target_w = sizes[self.depth - 1 - i]
            h = up(h)[:, :target_h, :target_w, :]
            h = jnp.tanh(h) if last else nn.relu(h)
        return h.reshape((z.shape[0], -1))
