"""DCGAN-style ConvCritic / ConvGenerator: shapes, layer order, probes, spectral norm, range."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from wgan_cli import metrics
from wgan_cli.models import (
    MLP,
    ConvCritic,
    ConvGenerator,
    PatchConv,
    conv_sizes,
    critic_fn,
    kernel_matrix,
    max_conv_depth,
)

CH = 4  # small channel counts keep compiles fast
B = 3
# (image_shape, depth, expected spatial sizes after each convolution)
CASES = [
    ((8, 8, 1), 3, [(4, 4), (2, 2), (1, 1)]),
    ((28, 28, 1), 3, [(14, 14), (7, 7), (4, 4)]),
    ((12, 10, 3), 2, [(6, 5), (3, 3)]),
]


def _x(shape: tuple[int, int, int], n: int = B, seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (n, int(np.prod(shape))), minval=-1, maxval=1)


def fake_variables(module: nn.Module, x: jax.Array, seed: int = 0) -> dict:
    """Variables of module's structure (from eval_shape, nothing compiled) filled with numpy
    draws: kernels N(0, 1 / fan_in), biases N(0, 0.1²), statistics N(0, 1).

    Compiling flax's init costs seconds per network on a busy CPU; one test below checks the
    real init, the others only need some weights of the right shapes.
    """
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def fill(path: tuple, leaf: jax.ShapeDtypeStruct) -> jax.Array:
        name = path[-1].key
        if name == "kernel":
            scale = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
        else:
            scale = 0.1 if name == "bias" else 1.0
        return jnp.asarray(rng.normal(0.0, scale, leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def test_sizes_and_max_depth() -> None:
    assert conv_sizes((28, 28, 1), 5) == [(28, 28), (14, 14), (7, 7), (4, 4), (2, 2), (1, 1)]
    assert conv_sizes((8, 8, 1), 3) == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert max_conv_depth((8, 8, 1)) == 3 and max_conv_depth((28, 28, 1)) == 5
    assert max_conv_depth((1, 1, 3)) == 0


@pytest.mark.parametrize(("shape", "depth", "sizes"), CASES)
def test_critic_shapes_layers_and_probes(shape: tuple, depth: int, sizes: list) -> None:
    critic = ConvCritic(CH, depth, shape)
    x = _x(shape)
    variables = fake_variables(critic, x[:1])
    params = variables["params"]
    # Natural sort puts layers in network order, each with a kernel whose matrix form is
    # (kh * kw * cin, cout).
    names = [f"Conv_{i}" for i in range(depth)] + ["Dense_0"]
    assert metrics.layer_names(params) == names
    cin = shape[2]
    for i in range(depth):
        kernel = params[f"Conv_{i}"]["kernel"]
        assert kernel.shape == (4, 4, cin, CH * 2**i)
        assert kernel_matrix(kernel).shape == (16 * cin, CH * 2**i)
        cin = CH * 2**i
    h, w = sizes[-1]
    assert params["Dense_0"]["kernel"].shape == (h * w * cin, 1)
    assert kernel_matrix(params["Dense_0"]["kernel"]).shape == (h * w * cin, 1)
    # Probes: one per convolution, shaped like its output; zero probes change nothing.
    probe_shapes = critic.probe_shapes(B)
    assert probe_shapes == [(B, hh, ww, CH * 2**i) for i, (hh, ww) in enumerate(sizes)]
    probes = [jnp.zeros(s) for s in probe_shapes]

    @jax.jit  # one program: eager flax dispatches (and compiles) op by op, which is slower
    def run(variables: dict, x: jax.Array, probes: list) -> tuple:
        def loss(probes: list[jax.Array]) -> jax.Array:
            return critic.apply(variables, x, probes=probes).sum()

        out = critic.apply(variables, x)
        return out, critic.apply(variables, x, probes=probes), jax.grad(loss)(probes)

    out, probed, grads = run(variables, x, probes)
    assert out.shape == (B, 1) and out.dtype == jnp.float32
    np.testing.assert_array_equal(probed, out)
    assert [g.shape for g in grads] == probe_shapes
    assert all(float(jnp.linalg.norm(g)) > 0 for g in grads)


def test_critic_is_per_sample() -> None:
    # Row i's output depends on row i only (gradient norms and the penalty rely on it), and a
    # row scores the same alone as in a batch.
    shape = (8, 8, 1)
    critic = ConvCritic(CH, 2, shape)
    x = _x(shape, n=4)
    f = critic_fn(critic, fake_variables(critic, x[:1]))
    jac = jax.jit(jax.jacobian(f))(x)
    assert jac.shape == (4, 4, 64)
    off_diagonal = jac * (1 - jnp.eye(4))[:, :, None]
    assert float(jnp.abs(off_diagonal).max()) == 0.0
    assert float(jnp.abs(jac).max()) > 0.0


def test_spectral_critic() -> None:
    shape = (8, 8, 1)
    critic = ConvCritic(CH, 2, shape, spectral=True)
    x = _x(shape)
    variables = fake_variables(critic, x[:1])
    assert set(variables) == {"params", "batch_stats"}
    # Same trainable parameters as without spectral norm; power-iteration vectors apart.
    plain = jax.eval_shape(ConvCritic(CH, 2, shape).init, jax.random.key(3), x[:1])
    shapes = jax.tree_util.tree_map(jnp.shape, variables["params"])
    assert shapes == jax.tree_util.tree_map(jnp.shape, plain["params"])
    # The u vector of a conv kernel has cout entries: the kernel is normalised as its
    # (kh * kw * cin, cout) matrix.
    u = variables["batch_stats"]["SpectralNorm_1"]["Conv_1/kernel/u"]
    assert u.shape == (1, CH * 2)
    probes = [jnp.zeros(s) for s in critic.probe_shapes(B)]

    @jax.jit
    def run(variables: dict, x: jax.Array, probes: list) -> tuple:
        out, stats = critic.apply(variables, x, update_stats=True, mutable=["batch_stats"])
        return out, stats, critic.apply(variables, x), critic.apply(variables, x, probes=probes)

    out, stats, frozen, probed = run(variables, x, probes)
    assert out.shape == (B, 1)
    assert not np.array_equal(
        stats["batch_stats"]["SpectralNorm_0"]["Conv_0/kernel/u"],
        variables["batch_stats"]["SpectralNorm_0"]["Conv_0/kernel/u"],
    )
    np.testing.assert_array_equal(probed, frozen)


@pytest.mark.parametrize(("shape", "depth", "sizes"), CASES)
def test_generator_shapes_and_range(shape: tuple, depth: int, sizes: list) -> None:
    noise_dim = 5
    gen = ConvGenerator(CH, depth, shape, noise_dim)
    z = jax.random.normal(jax.random.key(4), (B, noise_dim))
    variables = fake_variables(gen, z[:1])
    params = variables["params"]
    assert metrics.layer_names(params) == ["Dense_0"] + [f"Up_{i}" for i in range(depth)]
    assert all("kernel" in layer for _, layer in metrics.layers_in_order(params))
    # The critic's last feature map, then channels halving up to the image's C.
    h, w = sizes[-1]
    assert params["Dense_0"]["kernel"].shape == (noise_dim, h * w * CH * 2 ** (depth - 1))
    assert params[f"Up_{depth - 1}"]["kernel"].shape[-1] == shape[2]
    apply = jax.jit(gen.apply)
    out = np.asarray(apply(variables, z))
    assert out.shape == (B, int(np.prod(shape))) and out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0)
    # Large weights and noise saturate tanh: the output still stays within [-1, 1].
    big = jax.tree_util.tree_map(lambda p: 50.0 * p, variables)
    saturated = np.asarray(apply(big, 10.0 * z))
    assert np.all(np.abs(saturated) <= 1.0) and np.abs(saturated).max() > 0.99


def test_real_init_under_vmap_like_training() -> None:
    # The training code initialises one network per run with vmap over keys, inside jit.
    shape = (8, 8, 1)
    gen, critic = ConvGenerator(CH, 2, shape, 4), ConvCritic(CH, 2, shape)

    @jax.jit
    def init(keys: jax.Array) -> tuple:
        def one(key: jax.Array) -> tuple:
            k_gen, k_critic = jax.random.split(key)
            return gen.init(k_gen, jnp.zeros((1, 4))), critic.init(k_critic, jnp.zeros((1, 64)))

        return jax.vmap(one)(keys)

    gv, cv = init(jax.random.split(jax.random.key(7), 2))
    shapes = jax.tree_util.tree_map(jnp.shape, cv["params"])
    assert shapes["Conv_1"]["kernel"] == (2, 4, 4, CH, 2 * CH)
    assert not np.allclose(cv["params"]["Conv_0"]["kernel"][0], cv["params"]["Conv_0"]["kernel"][1])
    # Flax's default init, LeCun normal: std 1 / sqrt(fan_in), fan_in = kh * kw * cin; a
    # stride-2 transposed convolution's window holds a real input in 1 of 4 places.
    for kernel, seen in (
        (cv["params"]["Conv_1"]["kernel"], 1),
        (gv["params"]["Up_0"]["kernel"], 4),
    ):
        fan_in = np.prod(kernel.shape[1:-1]) / seen
        assert np.std(np.asarray(kernel)) * np.sqrt(fan_in) == pytest.approx(1.0, rel=0.15)
        assert np.abs(np.asarray(kernel)).max() * np.sqrt(fan_in) <= 2.0 / 0.8796 + 1e-5
    assert np.all(np.asarray(cv["params"]["Conv_0"]["bias"]) == 0.0)


def test_depth_beyond_one_by_one_is_refused() -> None:
    with pytest.raises(ValueError, match="depth must be 1..3"):
        ConvCritic(CH, 4, (8, 8, 1)).init(jax.random.key(0), jnp.zeros((1, 64)))
    with pytest.raises(ValueError, match="depth must be 1..3"):
        ConvGenerator(CH, 4, (8, 8, 1), 2).init(jax.random.key(0), jnp.zeros((1, 2)))


def test_modules_are_hashable_for_the_compile_cache() -> None:
    assert hash(ConvCritic(CH, 2, (8, 8, 1))) == hash(ConvCritic(CH, 2, (8, 8, 1)))
    assert ConvGenerator(CH, 2, (8, 8, 1), 3) == ConvGenerator(CH, 2, (8, 8, 1), 3)


def test_mlp_probe_shapes_match_its_hidden_layers() -> None:
    mlp = MLP(6, 3, 1)
    assert mlp.probe_shapes(5) == [(5, 6)] * 3
    x = jnp.ones((5, 2))
    variables = fake_variables(mlp, x)
    probes = [jnp.zeros(s) for s in mlp.probe_shapes(5)]
    np.testing.assert_array_equal(mlp.apply(variables, x, probes=probes), mlp.apply(variables, x))


def test_kernel_matrix_keeps_dense_kernels() -> None:
    k = jnp.arange(6.0).reshape(2, 3)
    assert kernel_matrix(k) is k
    conv = jnp.arange(4 * 4 * 2 * 3.0).reshape(4, 4, 2, 3)
    np.testing.assert_array_equal(kernel_matrix(conv)[5], conv.reshape(-1, 3)[5])


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (2, 7, 7, 3), (2, 4, 4, 2), (2, 1, 1, 4)])
@pytest.mark.parametrize("transpose", [False, True])
def test_patch_conv_is_flax_conv_with_the_same_parameters(shape: tuple, transpose: bool) -> None:
    # The reference is flax's own layer (lax's convolution), given the same random kernel and
    # bias; odd sizes (7 x 7) exercise the uneven "SAME" padding.
    reference = (nn.ConvTranspose if transpose else nn.Conv)(5, (4, 4), (2, 2), padding="SAME")
    x = jax.random.normal(jax.random.key(0), shape)
    variables = reference.init(jax.random.key(1), x)
    keys = iter(jax.random.split(jax.random.key(2), 2))
    variables = jax.tree_util.tree_map(lambda a: jax.random.normal(next(keys), a.shape), variables)
    expected = reference.apply(variables, x)
    got = PatchConv(5, transpose=transpose).apply(variables, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
