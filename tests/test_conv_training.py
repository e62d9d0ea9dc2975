"""Convolutional critics and generators in the training loop, on the shipped digits."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wgan_cli import data
from wgan_cli.cli import app
from wgan_cli.config import load_config
from wgan_cli.errors import WganError
from wgan_cli.models import PatchConv
from wgan_cli.train import (
    Hyper,
    Program,
    clip_coverage,
    compiled,
    init_run,
    layer_gradient_norms,
)

CONV = [
    "data.dataset=digits",
    "critic.kind=conv",
    "critic.channels=4",
    "generator.kind=conv",
    "generator.channels=4",
    "generator.noise_dim=4",
    "train.batch_size=16",
    "train.eval_samples=40",
    "train.steps=4",
    "train.log_every=2",
]
SETS = [arg for item in CONV for arg in ("--set", item)]


def program(*sets: str) -> Program:
    cfg = load_config(None, [*CONV, *sets])
    return Program.from_config(cfg, data.load(cfg.data.dataset)[0])


def hyper(*cs: float) -> Hyper:
    n = len(cs)
    return Hyper(
        jnp.array(cs, jnp.float32), *(jnp.full(n, v, jnp.float32) for v in (1e-3, 1e-3, 10.0))
    )


def test_last_conv_layer_gradient_is_the_output_kernel_scaled():
    # After depth 3 on 8 x 8 the feature map is 1 x 1 x 16 and f is linear in it through
    # Dense_0: d loss / d h = ±(1/n) w_out per row, so over 2n rows ||w_out|| sqrt(2 / n).
    prog = program()
    hp = Hyper(*(jnp.float32(v) for v in (1.0, 0, 0, 0)))
    state = jax.jit(init_run, static_argnums=0)(prog, jax.random.key(0), hp)
    _, arrays = data.load("digits")
    n = 30
    real = jnp.asarray(arrays["train"][:n])
    fake = jnp.asarray(arrays["heldout"][:n])
    act, weights = jax.jit(layer_gradient_norms, static_argnums=0)(prog, state.critic, real, fake)
    w_out = np.asarray(state.critic["params"]["Dense_0"]["kernel"], np.float64)
    assert act.shape == (3,) and weights.shape == (4,)
    assert float(act[2]) == pytest.approx(np.linalg.norm(w_out) * math.sqrt(2 / n), rel=1e-5)


def test_each_run_of_a_vmapped_conv_group_stays_in_its_own_box():
    prog = program()
    init, chunk, final = compiled(prog)
    cs = (0.003, 0.03, 0.3)
    hp = hyper(*cs)
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    state, row = chunk(init(keys, hp), hp, data.load("digits")[1])
    leaves = jax.tree_util.tree_leaves(state.critic)
    for r, c in enumerate(cs):
        assert max(float(jnp.max(jnp.abs(leaf[r]))) for leaf in leaves) <= np.float32(c)
    assert row["fake"].shape == (3, 40, 64)
    assert np.all(np.abs(row["fake"]) <= 1.0)  # the generator ends in tanh

    # Spectra: each kernel (kh, kw, cin, cout) as a (kh kw cin) x cout matrix, by numpy.
    ends = final(state)
    params = jax.tree_util.tree_map(lambda a: np.asarray(a[0]), state.critic["params"])
    names = ["Conv_0", "Conv_1", "Conv_2", "Dense_0"]
    for name, sv in zip(names, ends["singular_values"], strict=True):
        kernel = params[name]["kernel"]
        expected = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)
        np.testing.assert_allclose(np.asarray(sv[0]), expected, rtol=1e-4, atol=1e-7)
    assert [sv.shape[1] for sv in ends["singular_values"]] == [4, 8, 16, 1]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["data.dataset=swissroll", "train.eval_samples=40"], "critic.kind conv needs an image"),
        (["critic.depth=4"], "critic.depth 4 is too deep for 8 x 8 images"),
        (["generator.depth=5"], "generator.depth 5 is too deep"),
    ],
)
def test_conv_networks_that_cannot_fit_the_data_are_refused_before_any_folder(
    tmp_path: Path, sets: list[str], message: str
):
    out = tmp_path / "never"
    extra = [arg for item in sets for arg in ("--set", item)]
    result = CliRunner().invoke(app, ["sweep", "--c", "0.01", *SETS, *extra, "--out", str(out)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_program_refuses_conv_on_points():
    cfg = load_config(None, [*CONV, "critic.kind=mlp", "generator.kind=mlp"])
    spec = data.load("swissroll")[0]
    with pytest.raises(WganError, match="critic.kind conv"):
        Program.from_config(load_config(None, CONV), spec)
    Program.from_config(cfg, data.load("digits")[0])  # MLPs take digits as flat vectors


@pytest.fixture(scope="module")
def digits_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "conv"
    args = ["sweep", "--c", "0.001,0.1", *SETS, "--set", "train.hist_steps=[2]", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--devices", "1"])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def test_digits_rows_carry_the_digits_score(digits_sweep: Path):
    metrics = pd.read_csv(digits_sweep / "metrics.csv")
    assert len(metrics) == 2 * 2
    assert metrics["class_coverage"].between(0, 10).all()
    assert (metrics["class_coverage"] == metrics["class_coverage"].round()).all()
    assert metrics["mean_confidence"].between(0.1, 1.0).all()  # a max over 10 classes >= 1/10
    assert metrics["inception_score"].between(1.0, 10.0).all()
    assert (metrics["weight_abs_max"] <= metrics["c"].astype(np.float32)).all()
    assert (digits_sweep / "digits_classifier.npz").is_file()
    manifest = json.loads((digits_sweep / "manifest.json").read_text())
    assert "Conv_0/kernel" in manifest["clip_coverage"]["clipped"]


def test_samples_at_each_histogram_step_are_saved_as_images(digits_sweep: Path):
    with np.load(digits_sweep / "samples.npz") as f:
        assert list(f["image_shape"]) == [8, 8, 1]
        assert list(f["steps"]) == [2, 4]
        assert f["samples_at_steps"].shape == (2, 2, 40, 64)
        # The last saved step's images are the final samples' first ones.
        np.testing.assert_array_equal(f["samples_at_steps"][:, -1], f["samples"][:, :40])


def test_report_shows_image_grids_and_the_score_per_c(digits_sweep: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["report", str(digits_sweep), "--out", str(tmp_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    for plot in ("image_grid", "image_grid_steps"):
        assert (tmp_path / "plots" / f"{plot}.png").is_file()
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 2
    assert summary["class_coverage_mean"].notna().all()
    assert "inception_score" in (tmp_path / "report.md").read_text()


def test_layer_norm_normalises_each_sample_over_height_width_and_channels():
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 2))
    plain = PatchConv(5)
    variables = plain.init(jax.random.key(1), x)
    y = np.asarray(plain.apply(variables, x), np.float64)
    normed = PatchConv(5, layer_norm=True)
    nvars = normed.init(jax.random.key(1), x)
    assert set(nvars["params"]["norm"]) == {"scale", "bias"}  # per channel: (5,) each
    nvars = {"params": {**nvars["params"], **variables["params"]}}  # same kernel and bias
    mean = y.mean(axis=(1, 2, 3), keepdims=True)
    var = y.var(axis=(1, 2, 3), keepdims=True)
    expected = (y - mean) / np.sqrt(var + 1e-6)  # scale 1, offset 0 at init; flax's epsilon
    np.testing.assert_allclose(np.asarray(normed.apply(nvars, x)), expected, atol=1e-4)


@pytest.mark.parametrize("clip", ["all", "kernels"])
def test_manifest_coverage_names_the_clipped_normalisation_parameters(clip: str):
    prog = program("critic.norm=layer", f"constraint.clip={clip}")
    coverage = clip_coverage(prog)
    assert "Conv_1/kernel" in coverage["clipped"] and "Dense_0/kernel" in coverage["clipped"]
    norm = {f"Conv_{i}/norm/{p}" for i in range(3) for p in ("scale", "bias")}
    side = "clipped" if clip == "all" else "free"
    assert norm <= set(coverage[side])
    assert len(coverage["clipped"]) + len(coverage["free"]) == 3 * 4 + 2
    assert coverage["never_clipped_collections"] == []
    assert clip_coverage(program("constraint.kind=sn"))["never_clipped_collections"] == [
        "batch_stats"  # spectral norm's power-iteration vectors: statistics, not parameters
    ]


def test_layer_norm_is_for_the_conv_critic():
    with pytest.raises(WganError, match="critic.norm layer applies to the conv critic only"):
        load_config(None, ["critic.norm=layer"])
