"""The run axis sharded over 1, 2 and 4 devices gives the same runs, and compiles once."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from processes import TINY, as_sets, run_wgan

NUMBERS = ["w_estimate", "w1_true", "critic_loss", "gen_loss", "clip_frac", "grad_norm_real"]


def sweep(out: Path, devices: int, cache: Path) -> tuple[int, str]:
    """A real `wgan sweep` in a fresh process: XLA reads the device count once, at start."""
    args = ["sweep", "--c", "0.001,0.01,0.1", "--devices", str(devices), "--out", str(out)]
    return run_wgan([*args, *as_sets(TINY)], cache)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same sweep on 1, 2 and 4 devices, then on 1 device again with the same cache."""
    root = tmp_path_factory.mktemp("shards")
    outs = {}
    for name, devices in (("1", 1), ("2", 2), ("4", 4), ("1-again", 1)):
        outs[name] = root / name
        code, err = sweep(outs[name], devices, root / "cache")
        assert code == 0, err
    return outs


@pytest.mark.parametrize("devices", [2, 4])
def test_sharded_runs_match_one_device(swept: dict[str, Path], devices: int):
    manifest = json.loads((swept[str(devices)] / "manifest.json").read_text())
    assert manifest["run_devices"] == devices  # 3 runs: padded to 4 on both
    one = pd.read_csv(swept["1"] / "metrics.csv").sort_values(["run_id", "step"])
    many = pd.read_csv(swept[str(devices)] / "metrics.csv").sort_values(["run_id", "step"])
    assert len(many) == len(one) == 3 * 2  # the padding run never reaches a row
    assert list(many.run_id) == list(one.run_id)
    for column in NUMBERS:
        np.testing.assert_allclose(many[column], one[column], rtol=1e-5, atol=1e-7)
    for c, rows in many.groupby("c"):  # each sharded run keeps its own box
        assert (rows.weight_abs_max <= np.float32(c)).all()
    hist = np.load(swept[str(devices)] / "histograms.npz")
    assert hist["counts"].shape[0] == 3


def test_a_second_sweep_of_the_same_shapes_compiles_nothing(swept: dict[str, Path]):
    first, second = swept["1"], swept["1-again"]
    before = json.loads((first / "manifest.json").read_text())["compile_cache"]
    after = json.loads((second / "manifest.json").read_text())["compile_cache"]
    assert before["misses"] > 0  # the first sweep compiled and stored its programs ...
    assert after["misses"] == 0 and after["hits"] > 0  # ... the second only loaded them
    a = pd.read_csv(first / "metrics.csv").drop(columns="wall_s")
    b = pd.read_csv(second / "metrics.csv").drop(columns="wall_s")
    pd.testing.assert_frame_equal(a, b)  # and a cached program computes the same numbers


def without_time(path: Path) -> list[list[str]]:
    """A CSV's cells exactly as written (floats as repr text), its time column dropped."""
    with open(path, newline="") as fh:
        table = list(csv.reader(fh))
    keep = [i for i, name in enumerate(table[0]) if name != "wall_s"]
    return [[row[i] for i in keep] for row in table]


def test_the_same_command_twice_writes_the_same_bytes_but_for_time(swept: dict[str, Path]):
    for name in ("metrics.csv", "layers.csv", "spectra.csv", "runs.csv"):
        assert without_time(swept["1"] / name) == without_time(swept["1-again"] / name), name


FINAL_AGAIN = """
import jax, jax.numpy as jnp
from wgan_cli import config, data, sweep
from wgan_cli.train import Hyper, Program, compiled
raw = config.load_raw(None, ["critic.hidden=64", "generator.hidden=64", "train.batch_size=32"])
runs = sweep.expand(raw, sweep.Grid(cs=[0.001, 0.01, 0.1]))
spec, arrays = data.load("swissroll", None)
init, chunk, final = compiled(Program.from_config(runs[0].config, spec))
n = len(runs)
hp = Hyper(jnp.full(n, 0.01), jnp.full(n, 5e-5), jnp.full(n, 5e-5), jnp.full(n, 10.0))
keys = jnp.stack([jax.random.key_data(jax.random.key(i)) for i in range(n)])
hp, keys, _ = sweep._place(hp, keys, arrays, sweep.run_mesh(None))
state = init(jax.random.wrap_key_data(keys), hp)
for _ in range(5):
    final(state)
print("finished")
"""


def test_a_groups_final_diagnostics_never_hang_on_sharded_runs():
    """On 2 CPU devices a compiled program holding LAPACK's SVD beside other work hung on
    its second call (every XLA thread idle); a group's final diagnostics must not."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", FINAL_AGAIN], env=env, capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the final diagnostics hung")
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr
