"""Tests for config.py: the defaults, YAML loading, `--set` overrides, and every refusal.

Expected values come from the config section of the design (docs/DESIGN.md, the WGAN paper's
clipping settings), written out here by hand, not read back from the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from wgan_cli.config import Config, from_dict, load_config, with_values
from wgan_cli.errors import WganError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refusal(call, *args) -> str:
    """The message of the WganError that call(*args) raises; it must be a single line."""
    with pytest.raises(WganError) as info:
        call(*args)
    message = str(info.value)
    assert message.strip(), "empty error message"
    assert "\n" not in message, f"multi-line message: {message!r}"
    return message


# ---------------------------------------------------------------- defaults


def test_defaults_are_the_wgan_paper_settings_on_swissroll():
    cfg = Config()
    assert cfg.name == "swissroll"
    assert cfg.seed == 0
    assert cfg.data.dataset == "swissroll"
    assert cfg.data.path is None
    for net in (cfg.critic, cfg.generator):
        assert (net.depth, net.hidden, net.activation) == (3, 512, "relu")
    assert cfg.generator.noise_dim == 2
    assert cfg.train.steps == 1000
    assert cfg.train.batch_size == 256
    assert cfg.train.n_critic == 5
    assert cfg.train.log_every == 50
    assert cfg.train.eval_samples == 1000
    assert cfg.constraint.kind == "clip"
    assert cfg.constraint.c == 0.01
    for opt in (cfg.optim.critic, cfg.optim.generator):
        assert opt.name == "rmsprop"
        assert opt.lr == 5e-5


def test_swissroll_yaml_is_exactly_the_builtin_default():
    assert load_config(CONFIGS / "swissroll.yaml") == Config()


def test_no_file_and_no_overrides_is_the_default():
    assert load_config(None) == Config()
    assert load_config(None, []) == Config()
    assert from_dict({}) == Config()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    # Each shipped file names its data, critic, training and constraint, and its dataset is
    # the file's own. (Multi-arm files leave optim unset so each arm keeps its own defaults;
    # critic-only files need no generator.)
    raw = yaml.safe_load(path.read_text())
    assert set(raw) >= {"name", "data", "critic", "train", "constraint"}
    assert cfg.data.dataset == raw["data"]["dataset"]


def test_configs_folder_is_not_empty():
    assert (CONFIGS / "swissroll.yaml").is_file()
    assert len(list(CONFIGS.glob("*.yaml"))) >= 2


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.train.steps = 5  # type: ignore[misc]


# ---------------------------------------------------------------- YAML and --set values


def test_yaml_exponent_without_dot_becomes_a_float(tmp_path: Path):
    text = "optim:\n  critic: {lr: 1e-4}\n  generator: {lr: 2e-4}\nconstraint: {c: 1e-2}\n"
    # The premise: PyYAML (YAML 1.1) reads these as strings, not numbers.
    assert yaml.safe_load(text)["optim"]["critic"]["lr"] == "1e-4"
    cfg = load_config(write(tmp_path, text))
    assert type(cfg.optim.critic.lr) is float and cfg.optim.critic.lr == 0.0001
    assert type(cfg.optim.generator.lr) is float and cfg.optim.generator.lr == 0.0002
    assert type(cfg.constraint.c) is float and cfg.constraint.c == 0.01


def test_set_exponent_without_dot_becomes_a_float():
    cfg = load_config(None, ["optim.critic.lr=1e-4"])
    assert type(cfg.optim.critic.lr) is float
    assert cfg.optim.critic.lr == 0.0001
    assert cfg.optim.generator.lr == 5e-5  # the other net keeps its default


def test_integer_for_a_float_field_becomes_a_float():
    cfg = load_config(None, ["constraint.c=1"])
    assert type(cfg.constraint.c) is float and cfg.constraint.c == 1.0


def test_set_overrides_the_file_and_later_sets_win(tmp_path: Path):
    path = write(tmp_path, "train: {steps: 400, log_every: 20}\ncritic: {hidden: 64}\n")
    cfg = load_config(
        path, ["critic.hidden=128", "train.steps=200", "train.steps=300", "name=probe"]
    )
    assert cfg.critic.hidden == 128
    assert cfg.train.steps == 300
    assert cfg.train.log_every == 20  # from the file
    assert cfg.critic.depth == 3  # untouched default
    assert cfg.name == "probe"


def test_partial_file_keeps_defaults_elsewhere(tmp_path: Path):
    cfg = load_config(write(tmp_path, "critic: {depth: 12}\n"))
    assert cfg.critic.depth == 12
    assert cfg.critic.hidden == 512
    assert cfg.generator == Config().generator
    assert cfg.train == Config().train


def test_set_spaces_around_key_and_value_are_ignored():
    assert load_config(None, [" train.steps = 200 "]).train.steps == 200


def test_set_empty_value_is_null_for_an_optional_field():
    assert load_config(None, ["data.path="]).data.path is None


def test_with_values_replaces_dotted_keys_and_keeps_the_rest():
    cfg = with_values(Config(), {"constraint.c": 0.1, "seed": 7})
    assert cfg.constraint.c == 0.1
    assert cfg.seed == 7
    assert cfg.train == Config().train
    assert Config().constraint.c == 0.01  # the original is not modified


# ---------------------------------------------------------------- refusals


def test_unknown_key_in_set_suggests_the_close_name():
    message = refusal(load_config, None, ["train.n_critc=3"])
    assert "train.n_critc" in message
    assert "train.n_critic" in message


def test_unknown_key_in_file_suggests_the_close_name(tmp_path: Path):
    message = refusal(load_config, write(tmp_path, "train:\n  n_critc: 3\n"))
    assert "train.n_critc" in message
    assert "train.n_critic" in message


def test_unknown_section_suggests_the_close_name():
    message = refusal(load_config, None, ["trian.steps=3"])
    assert "trian" in message
    assert "train" in message.replace("trian", "")


def test_unknown_key_via_with_values():
    message = refusal(with_values, Config(), {"constraint.cc": 0.1})
    assert "constraint.cc" in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("train: {steps: many}\n", "train.steps"),
        ('train: {steps: "100"}\n', "train.steps"),
        ("critic: {hidden: 1.5}\n", "critic.hidden"),
        ("constraint: {c: [0.01, 0.1]}\n", "constraint.c"),
        ("optim: {critic: {lr: [1.0e-4]}}\n", "optim.critic.lr"),
        ("constraint: {c: {value: 0.1}}\n", "constraint.c"),
        ("critic: {activation: no}\n", "critic.activation"),  # YAML 1.1 boolean false
        ("name: yes\n", "name"),
        ("train: {steps: true}\n", "train.steps"),  # a boolean is not an integer
        ("constraint: {c: true}\n", "constraint.c"),  # nor a number
        ("constraint: {c: abc}\n", "constraint.c"),
        ("train: 5\n", "train"),  # a value where a section belongs
    ],
)
def test_wrong_type_names_the_field(tmp_path: Path, text: str, field: str):
    message = refusal(load_config, write(tmp_path, text))
    assert field in message


def test_wrong_type_via_set_names_the_field():
    assert "train.steps" in refusal(load_config, None, ["train.steps=many"])
    assert "critic.activation" in refusal(load_config, None, ["critic.activation=no"])


@pytest.mark.parametrize("c", ["0", "0.0", "-0.01", "-1", "-1e-3"])
def test_non_positive_c_is_refused(tmp_path: Path, c: str):
    assert "constraint.c" in refusal(load_config, None, [f"constraint.c={c}"])
    assert "constraint.c" in refusal(load_config, write(tmp_path, f"constraint: {{c: {c}}}\n"))


@pytest.mark.parametrize("c", [".inf", "-.inf", ".nan", "nan", "inf"])
def test_non_finite_c_is_refused(c: str):
    assert "constraint.c" in refusal(load_config, None, [f"constraint.c={c}"])


def test_non_positive_learning_rate_is_refused():
    assert "optim.generator.lr" in refusal(load_config, None, ["optim.generator.lr=0"])


def test_missing_file(tmp_path: Path):
    path = tmp_path / "absent.yaml"
    message = refusal(load_config, path)
    assert str(path) in message


def test_malformed_yaml(tmp_path: Path):
    path = write(tmp_path, "train: {steps: [1, 2\ncritic: {\n")
    message = refusal(load_config, path)
    assert str(path) in message
    assert "yaml" in message.lower()


def test_tab_indented_yaml_is_malformed(tmp_path: Path):
    message = refusal(load_config, write(tmp_path, "train:\n\tsteps: 5\n"))
    assert "yaml" in message.lower()


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str):
    path = write(tmp_path, text)
    message = refusal(load_config, path)
    assert str(path) in message
    assert "empty" in message


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "- name: x\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str):
    message = refusal(load_config, write(tmp_path, text))
    assert "top level" in message or "mapping" in message


def test_from_dict_refuses_a_non_mapping():
    refusal(from_dict, [1, 2])


@pytest.mark.parametrize(
    "field", ["train.steps", "critic.hidden", "constraint.c", "optim.critic.lr", "name"]
)
def test_null_for_a_required_field(tmp_path: Path, field: str):
    nested: object = None
    for part in reversed(field.split(".")):
        nested = {part: nested}
    text = yaml.safe_dump(nested)
    assert "null" in text
    assert field in refusal(load_config, write(tmp_path, text))
    assert field in refusal(load_config, None, [f"{field}=null"])


def test_unknown_dataset_names_the_value():
    message = refusal(load_config, None, ["data.dataset=mnist64"])
    assert "mnist64" in message
    assert "data.dataset" in message


def test_unknown_choice_names_the_value():
    assert "sigmoidish" in refusal(load_config, None, ["critic.activation=sigmoidish"])
    assert "adagradx" in refusal(load_config, None, ["optim.critic.name=adagradx"])


def test_log_every_above_steps():
    message = refusal(load_config, None, ["train.steps=10", "train.log_every=20"])
    assert "train.log_every" in message


@pytest.mark.parametrize("steps", ["-1", "-1000", "0"])
def test_non_positive_steps(steps: str):
    assert "train.steps" in refusal(load_config, None, [f"train.steps={steps}"])


def test_negative_seed():
    assert "seed" in refusal(load_config, None, ["seed=-1"])


@pytest.mark.parametrize("item", ["train.steps", "train.steps:5", "", "=5", "  =5"])
def test_set_without_key_equals_value(item: str):
    message = refusal(load_config, None, [item])
    assert "--set" in message
    assert "=" in message


@pytest.mark.parametrize(
    ("items", "field"),
    [
        (["train.steps.x=1"], "train.steps"),
        (["constraint.c.value=0.1"], "constraint.c"),
        (["optim.critic.lr.x=1"], "optim.critic.lr"),
        # A later --set of the leaf must not hide the earlier path through it.
        (["train.steps.x=1", "train.steps=100"], "train.steps"),
    ],
)
def test_set_through_a_leaf(items: list[str], field: str):
    assert field in refusal(load_config, None, items)


def test_set_through_a_leaf_that_the_file_sets(tmp_path: Path):
    path = write(tmp_path, "train: {steps: 100, log_every: 10}\n")
    assert "train.steps" in refusal(load_config, path, ["train.steps.x=1"])


def test_with_values_through_a_leaf():
    assert "train.steps" in refusal(with_values, Config(), {"train.steps.x": 1})


@pytest.mark.parametrize("key", ["train..steps", ".steps", "train.", "."])
def test_set_key_with_an_empty_part(key: str):
    refusal(load_config, None, [f"{key}=3"])


# ---------------------------------------------------------------- properties of c


@given(st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False))
def test_any_positive_finite_c_is_kept_exactly(c: float):
    assert with_values(Config(), {"constraint.c": c}).constraint.c == c


@given(st.floats(max_value=0.0, allow_nan=False))
def test_any_non_positive_c_is_refused(c: float):
    assert c <= 0 or math.isinf(c)
    with pytest.raises(WganError, match="constraint.c"):
        with_values(Config(), {"constraint.c": c})


@given(st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False))
def test_any_positive_c_round_trips_through_a_set_string(c: float):
    assert load_config(None, [f"constraint.c={c!r}"]).constraint.c == c
