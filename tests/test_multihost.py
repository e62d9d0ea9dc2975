"""A sweep over two hosts (two processes on this machine joined by jax.distributed) gives the
same runs as one host, each host writes only its own runs' rows, and host 0's merge makes one
results folder that reads like a single host's."""

import csv
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from processes import TINY, as_sets, run_wgan, start_wgan

SWEEP = ["sweep", "--c", "0.001,0.01,0.1", "--seeds", "0,1", "--devices", "1"]
SWEEP += as_sets(TINY)
NUMBERS = ["w_estimate", "w1_true", "critic_loss", "gen_loss", "clip_frac", "grad_norm_real"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_ids(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return [row["run_id"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hosts")
    code, err = run_wgan([*SWEEP, "--out", str(root / "one")], root / "cache")
    assert code == 0, err
    cluster = ["--coordinator", f"localhost:{free_port()}", "--num-hosts", "2"]
    hosts = [
        start_wgan(
            [*SWEEP, *cluster, "--host-id", str(i), "--out", str(root / "two")], root / "cache"
        )
        for i in range(2)
    ]
    for proc in hosts:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    return {"one": root / "one", "two": root / "two"}


def test_each_host_writes_only_its_own_runs(swept: dict[str, Path]):
    shares = [set(run_ids(swept["two"] / "hosts" / str(i) / "metrics.csv")) for i in range(2)]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(run_ids(swept["one"] / "runs.csv"))


def test_the_merged_folder_holds_the_single_host_sweep(swept: dict[str, Path]):
    one, two = swept["one"], swept["two"]
    assert run_ids(two / "runs.csv") == run_ids(one / "runs.csv")  # in the sweep's order
    assert set(pd.read_csv(two / "runs.csv").status) == {"done"}
    for name, keys in (("metrics.csv", ["run_id", "step"]), ("layers.csv", ["run_id", "layer"])):
        a = pd.read_csv(one / name).sort_values(keys, kind="stable").reset_index(drop=True)
        b = pd.read_csv(two / name).sort_values(keys, kind="stable").reset_index(drop=True)
        assert len(a) == len(b) and list(a.run_id) == list(b.run_id), name
        numbers = NUMBERS if name == "metrics.csv" else ["act_grad_norm", "weight_grad_norm"]
        for column in numbers:
            np.testing.assert_allclose(b[column], a[column], rtol=1e-5, atol=1e-7)
    spectra = [pd.read_csv(f / "spectra.csv").sort_values(["run_id", "layer"]) for f in (one, two)]
    np.testing.assert_allclose(spectra[1].top_singular_value, spectra[0].top_singular_value, 1e-5)
    for name in ("histograms.npz", "samples.npz"):
        a, b = np.load(one / name), np.load(two / name)
        order = [list(b["run_ids"]).index(r) for r in a["run_ids"]]
        for key in ("counts", "samples"):
            if key in a.files:
                np.testing.assert_allclose(b[key][order], a[key], rtol=1e-5, atol=1e-6)


def test_the_merged_folder_reports(swept: dict[str, Path]):
    from wgan_cli.report import build_report

    result = build_report([swept["two"]], None, formats={"csv"})
    summary = pd.read_csv(swept["two"] / "summary.csv")
    assert len(summary) == 3 and (summary.n == 2).all(), result.table
