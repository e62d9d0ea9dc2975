"""Tests for the `wgan` command line: help, version, option plumbing, and user errors.

Every user mistake must end with exit code 2 and exactly one `error: ...` line on stderr, never
a traceback. Training is replaced by a recording fake everywhere except one tiny real run of
`wgan train`; the end-to-end sweep tests live elsewhere.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import wgan_cli.sweep
from wgan_cli.cli import app
from wgan_cli.config import resolve
from wgan_cli.errors import WganError
from wgan_cli.sweep import SweepResult, parse_list

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: A model small enough that, should a refusal below regress, the run still ends in seconds.
TINY = [
    "--set", "critic.hidden=8",
    "--set", "generator.hidden=8",
    "--set", "train.steps=4",
    "--set", "train.log_every=2",
    "--set", "train.eval_samples=50",
    "--set", "train.batch_size=16",
]  # fmt: skip

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose working directory is a fresh folder, so no default results/ leaks."""
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def fake_sweep(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace training with a fake that records what the CLI passed to run_sweep."""
    calls: list[dict] = []

    def run_sweep(raw, grid, out, progress=lambda _: None, devices=None):
        cfg = resolve(raw)
        calls.append(
            {"cfg": cfg, "cs": grid.cs, "seeds": grid.seeds, "grid": grid, "out": Path(out)}
        )
        runs = [{"run_id": "aaaaaaaaaaaa", "status": "done"}]
        if cfg.name == "diverging":
            runs.append({"run_id": "bbbbbbbbbbbb", "status": "diverged"})
        return SweepResult(Path(out), runs, 2.0, 8)

    monkeypatch.setattr(wgan_cli.sweep, "run_sweep", run_sweep)
    return calls


def plain(text: str) -> str:
    return ANSI.sub("", text)


def assert_user_error(result, *needles: str) -> str:
    """Exit 2, one `error:` line on stderr naming each needle, no traceback, nothing on stdout."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------- version and help


def test_version(runner: CliRunner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    expected = importlib.metadata.version("wgan-cli")  # pyproject.toml, not the module
    assert result.stdout.strip() == f"wgan {expected}"


def test_top_level_help_lists_the_commands(runner: CliRunner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    text = plain(result.stdout)
    for command in ("train", "sweep", "report"):
        assert command in text
    assert "--version" in text


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("train", ["--config", "--set", "--out"]),
        ("sweep", ["--config", "--set", "--out", "--c", "--seeds", "--resume", "--devices"]),
        ("report", ["--out"]),
    ],
)
def test_help_mentions_every_option(runner: CliRunner, command: str, options: list[str]):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (option, text)
    if command == "report":
        assert "FOLDER" in text.upper()


# ---------------------------------------------------------------- plumbing (training faked)


def test_sweep_passes_lists_overrides_and_out(runner: CliRunner, fake_sweep, tmp_path: Path):
    out = tmp_path / "res"
    args = ["sweep", "--c", "0.001, 0.01", "--seeds", "0,1,2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--set", "critic.hidden=128", "--set", "seed=9"])
    assert result.exit_code == 0, result.output
    (call,) = fake_sweep
    assert call["cs"] == [0.001, 0.01]
    assert call["seeds"] == [0, 1, 2]
    assert call["out"] == out
    assert call["cfg"].critic.hidden == 128
    assert call["cfg"].seed == 9
    assert call["cfg"].train.steps == 1000  # default kept
    assert str(out) in result.stdout
    assert f"wgan report {out}" in result.stdout
    assert "error" not in result.stderr


def test_sweep_without_options_runs_the_default_config(runner: CliRunner, fake_sweep):
    from wgan_cli.config import Config

    result = runner.invoke(app, ["sweep"])
    assert result.exit_code == 0, result.output
    (call,) = fake_sweep
    assert call["cfg"] == Config()
    assert call["cs"] is None and call["seeds"] is None
    # Default folder: results/<name>-<timestamp>, relative to the working directory.
    assert call["out"].parent == Path("results")
    assert re.fullmatch(r"swissroll-\d{8}-\d{6}", call["out"].name), call["out"]


def test_train_uses_the_configs_own_c_and_seed(runner: CliRunner, fake_sweep, tmp_path: Path):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 4\nconstraint: {c: 0.05}\n")
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    (call,) = fake_sweep
    assert call["cs"] is None and call["seeds"] is None
    assert call["cfg"].constraint.c == 0.05
    assert call["cfg"].seed == 4


def test_diverged_runs_are_named_on_stderr_and_exit_3(
    runner: CliRunner, fake_sweep, tmp_path: Path
):
    result = runner.invoke(app, ["sweep", "--set", "name=diverging", "--out", str(tmp_path)])
    assert result.exit_code == 3, result.output
    assert "bbbbbbbbbbbb" in result.stderr
    assert "aaaaaaaaaaaa" not in result.stderr


# ---------------------------------------------------------------- user errors


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: [1, 2\ncritic: {\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me\n")
    return {"bad": bad, "full": full, "missing": tmp_path / "missing.yaml"}


def test_unknown_key_via_set(runner: CliRunner, tmp_path: Path):
    args = ["sweep", *TINY, "--set", "train.n_critc=3", "--out", str(tmp_path / "o")]
    assert_user_error(runner.invoke(app, args), "train.n_critc", "train.n_critic")
    assert not (tmp_path / "o").exists()


def test_unknown_key_via_set_on_train(runner: CliRunner, tmp_path: Path):
    config = str(CONFIGS / "swissroll.yaml")
    args = ["train", "--config", config, *TINY, "--set", "critic.hiden=8"]
    assert_user_error(runner.invoke(app, [*args, "--out", str(tmp_path / "o")]), "critic.hiden")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_missing_config_file(runner: CliRunner, files, command: str):
    args = [command, "--config", str(files["missing"]), "--out", "o"]
    assert_user_error(runner.invoke(app, args), "missing.yaml")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_malformed_yaml_file(runner: CliRunner, files, command: str):
    args = [command, "--config", str(files["bad"]), "--out", "o"]
    line = assert_user_error(runner.invoke(app, args), "bad.yaml")
    assert "yaml" in line.lower()


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--c", "0.01,abc", "abc"),
        ("--c", "0.01,-0.1", "-0.1"),
        ("--c", "0,0.1", "0"),
        ("--c", "0.01,0.01", "0.01"),
        ("--c", "0.01,1e-2", "--c"),  # the same value spelled twice
        ("--c", "0.01,", "--c"),
        ("--c", "nan", "nan"),
        ("--c", "inf", "inf"),
        ("--seeds", "1,x", "x"),
        ("--seeds", "1,1", "1"),
        ("--seeds", "-1", "-1"),
        ("--seeds", "1.5", "1.5"),
    ],
)
def test_bad_sweep_lists(runner: CliRunner, tmp_path: Path, option: str, value: str, needle):
    args = ["sweep", *TINY, option, value, "--out", str(tmp_path / "o")]
    assert_user_error(runner.invoke(app, args), option, needle)
    assert not (tmp_path / "o").exists()


def test_c_with_a_non_clip_constraint(runner: CliRunner, tmp_path: Path):
    args = ["sweep", *TINY, "--set", "constraint.kind=none", "--c", "0.1"]
    assert_user_error(runner.invoke(app, [*args, "--out", str(tmp_path / "o")]), "--c")


@pytest.mark.parametrize(
    ("item", "needle"),
    [("train.steps", "--set"), ("train.steps.x=1", "train.steps"), ("data.dataset=x9", "x9")],
)
def test_bad_set(runner: CliRunner, tmp_path: Path, item: str, needle: str):
    args = ["sweep", *TINY, "--set", item, "--out", str(tmp_path / "o")]
    assert_user_error(runner.invoke(app, args), needle)


def test_report_on_a_missing_folder(runner: CliRunner, tmp_path: Path):
    missing = tmp_path / "no-such-results"
    assert_user_error(runner.invoke(app, ["report", str(missing)]), str(missing))
    assert not missing.exists()


def test_report_on_a_file(runner: CliRunner, files):
    assert_user_error(runner.invoke(app, ["report", str(files["bad"])]), "bad.yaml")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_existing_non_empty_out_folder(runner: CliRunner, files, command: str):
    full = files["full"]
    args = [command, "--config", str(CONFIGS / "swissroll.yaml"), *TINY, "--out", str(full)]
    assert_user_error(runner.invoke(app, args), str(full))
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"]
    assert (full / "notes.txt").read_text() == "keep me\n"


# ---------------------------------------------------------------- parse_list


def test_parse_list_allows_spaces_after_commas():
    assert parse_list("0.001, 0.01", "--c", float) == [0.001, 0.01]
    assert parse_list(" 0.001 ,0.01 ", "--c", float) == [0.001, 0.01]
    assert parse_list("0, 1,2", "--seeds", int) == [0, 1, 2]


def test_parse_list_keeps_order_and_reads_exponents():
    assert parse_list("0.1,1e-3,0.01", "--c", float) == [0.1, 0.001, 0.01]


def test_parse_list_seed_zero_is_allowed_but_c_zero_is_not():
    assert parse_list("0", "--seeds", int) == [0]
    with pytest.raises(WganError, match="--c"):
        parse_list("0", "--c", float)


positive_floats = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)


@given(st.lists(positive_floats, min_size=1, max_size=8, unique=True))
def test_parse_list_round_trips_distinct_positive_floats(values: list[float]):
    assert parse_list(", ".join(repr(v) for v in values), "--c", float) == values


@given(st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=8, unique=True))
def test_parse_list_round_trips_distinct_seeds(values: list[int]):
    assert parse_list(", ".join(str(v) for v in values), "--seeds", int) == values


@given(st.lists(positive_floats, min_size=1, max_size=6), st.data())
def test_parse_list_refuses_any_repeated_value(values: list[float], data):
    repeated = data.draw(st.sampled_from(values))
    at = data.draw(st.integers(min_value=0, max_value=len(values)))
    items = [*values[:at], repeated, *values[at:]]
    with pytest.raises(WganError, match="--c"):
        parse_list(",".join(repr(v) for v in items), "--c", float)


@given(
    st.lists(positive_floats, max_size=5, unique=True),
    st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
)
def test_parse_list_refuses_any_non_positive_c(values: list[float], bad: float):
    assert bad <= 0 and not math.isinf(bad)
    with pytest.raises(WganError, match="--c"):
        parse_list(", ".join(repr(v) for v in [*values, bad]), "--c", float)


# ---------------------------------------------------------------- one real, tiny run


def test_tiny_real_train_applies_overrides(runner: CliRunner, tmp_path: Path):
    out = tmp_path / "tiny"
    config = str(CONFIGS / "swissroll.yaml")
    result = runner.invoke(app, ["train", "--config", config, *TINY, "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "error:" not in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout.strip().splitlines()[-1] == f"next: wgan report {out}"
    saved = yaml.safe_load((out / "sweep.yaml").read_text())["runs"][0]
    assert saved["critic"]["hidden"] == 8 and saved["generator"]["hidden"] == 8
    assert saved["train"]["steps"] == 4 and saved["train"]["batch_size"] == 16
    assert saved["constraint"]["c"] == 0.01  # the file's own c, untouched by train
    assert (out / "runs.csv").is_file() and (out / "metrics.csv").is_file()
