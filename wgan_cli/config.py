"""The experiment config: a typed, frozen tree of dataclasses loaded from YAML.

Every field has a default (together they are the built-in swiss-roll experiment with the WGAN
paper's clipping settings) and a one-line description, which `wgan` prints in messages. The
names are public interface: users' YAML files and `--set a.b=v` overrides depend on them.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wgan_cli.data import DATASETS, FILE_DATASETS, IMAGE_DATASETS
from wgan_cli.errors import WganError

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "elu")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
CONSTRAINTS = ("clip", "gp", "sn", "none")
CLIP_TARGETS = ("all", "kernels")
NETWORKS = ("mlp", "conv")
NORMS = ("none", "layer")


def _f(default: Any, doc: str, *, choices: tuple[str, ...] = (), gt: float | None = None, ge=None):
    """A config field: default, description, allowed strings, and a lower bound."""
    meta = {"doc": doc, "choices": choices, "gt": gt, "ge": ge}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = _f("swissroll", "which data set the generator learns", choices=DATASETS)
    path: str | None = _f(None, "the user's file, for file-based data sets")


@dataclass(frozen=True)
class CriticConfig:
    kind: str = _f("mlp", "mlp, or conv (DCGAN-style; image data sets only)", choices=NETWORKS)
    hidden: int = _f(512, "mlp: units per hidden layer", gt=0)
    depth: int = _f(3, "number of hidden layers (conv: stride-2 convolutions)", gt=0)
    activation: str = _f("relu", "hidden-layer nonlinearity", choices=ACTIVATIONS)
    channels: int = _f(64, "conv: channels of the first convolution, doubled per layer", gt=0)
    norm: str = _f("none", "conv: none, or layer (LayerNorm after each convolution)", choices=NORMS)


@dataclass(frozen=True)
class GeneratorConfig:
    kind: str = _f("mlp", "mlp, or conv (DCGAN-style; image data sets only)", choices=NETWORKS)
    hidden: int = _f(512, "mlp: units per hidden layer", gt=0)
    depth: int = _f(3, "number of hidden layers (conv: stride-2 transposed convolutions)", gt=0)
    activation: str = _f("relu", "mlp: hidden-layer nonlinearity", choices=ACTIVATIONS)
    noise_dim: int = _f(2, "dimension of the generator's Gaussian input", gt=0)
    channels: int = _f(64, "conv: channels into the last transposed convolution", gt=0)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = _f(1000, "generator iterations", gt=0)
    batch_size: int = _f(256, "samples per batch, real and fake alike", gt=0)
    n_critic: int = _f(5, "critic updates per generator update", gt=0)
    log_every: int = _f(50, "generator steps between metric rows (one compiled chunk)", gt=0)
    eval_samples: int = _f(1000, "held-out samples for w_estimate and w1_true", ge=2)
    hist_steps: tuple[int, ...] = _f(
        (), "steps (multiples of log_every) to save weight histograms at", ge=1
    )
    critic_only: bool = _f(False, "train only the critic, against real data plus noise")
    fake_noise_std: float = _f(1.0, "critic_only: std σ of the noise added to real data", gt=0.0)


@dataclass(frozen=True)
class ConstraintConfig:
    kind: str = _f("clip", "how the critic is kept Lipschitz", choices=CONSTRAINTS)
    c: float = _f(0.01, "clip every critic parameter into [-c, c] (clip only)", gt=0.0)
    gp_lambda: float = _f(10.0, "weight of the gradient penalty (gp only)", gt=0.0)
    clip: str = _f("all", "which critic parameters are clipped", choices=CLIP_TARGETS)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = _f("rmsprop", "optimizer", choices=OPTIMIZERS)
    lr: float = _f(5.0e-5, "learning rate", gt=0.0)


@dataclass(frozen=True)
class OptimConfig:
    critic: OptimizerConfig = field(default_factory=OptimizerConfig)
    generator: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass(frozen=True)
class Config:
    name: str = _f("swissroll", "experiment name: the default results folder's prefix")
    seed: int = _f(0, "PRNG seed of the run", ge=0)
    data: DataConfig = field(default_factory=DataConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    constraint: ConstraintConfig = field(default_factory=ConstraintConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of YAML-safe values (lists, not tuples), for dumps and run hashes."""
    return dataclasses.asdict(cfg, dict_factory=lambda items: {k: _plain(v) for k, v in items})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


#: Defaults that depend on the constraint arm, applied under whatever the user set. WGAN-GP's
#: Adam (lr 1e-4, betas fixed in train.make_optimizer) suits gp and sn; clip and none keep the
#: WGAN paper's RMSProp.
ARM_DEFAULTS: dict[str, dict[str, Any]] = {
    kind: {"optim": {net: {"name": "adam", "lr": 1.0e-4} for net in ("critic", "generator")}}
    for kind in ("gp", "sn")
}


def load_config(path: Path | None, overrides: list[str] = ()) -> Config:
    """The default experiment, updated by a YAML file and then by `key=value` overrides."""
    return resolve(load_raw(path, overrides))


def load_raw(path: Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    """Only what the user set (file, then overrides), checked by resolving it once.

    Sweeps keep this rather than a Config, so that each arm's own defaults apply wherever
    the user left a field unset.
    """
    raw: dict[str, Any] = {} if path is None else _read_yaml(path)
    for item in overrides:
        key, text, value = _parse_override(item)
        _set_path(raw, key, _as_typed(key, text, value))
    resolve(raw)
    return raw


def resolve(raw: dict[str, Any], values: dict[str, Any] | None = None) -> Config:
    """The Config for user settings raw plus dotted values, over the arm's defaults."""
    raw = copy.deepcopy(raw)
    for key, value in (values or {}).items():
        _set_path(raw, key, value)
    kind = raw.get("constraint", {}).get("kind", ConstraintConfig.kind)
    return from_dict(_merge(copy.deepcopy(ARM_DEFAULTS.get(kind, {})), raw))


def is_set(raw: dict[str, Any], key: str) -> bool:
    """Whether the user set dotted key themselves."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def with_values(cfg: Config, values: dict[str, Any]) -> Config:
    """A copy of cfg with dotted keys replaced and the result validated again."""
    raw = to_dict(cfg)
    for key, value in values.items():
        _set_path(raw, key, value)
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> Config:
    """Validate a nested dict into a Config; every problem is a one-line WganError."""
    cfg = _build(Config, raw, "")
    _check_cross_fields(cfg)
    return cfg


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise WganError(f"config file not found: {path}")
    try:
        text = path.read_text()
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise WganError(f"{path}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WganError(f"cannot read config file {path}: {exc}") from None
    if raw is None:
        raise WganError(f"config file {path} is empty")
    if not isinstance(raw, dict):
        raise WganError(f"{path}: the top level must be a mapping of config keys")
    return raw


def _parse_override(item: str) -> tuple[str, str, Any]:
    """`key=value` -> (key, the value's text, the value as YAML reads it)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise WganError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), text.strip(), value


def _as_typed(key: str, text: str, value: Any) -> Any:
    """A free-text field keeps the text the user typed after `--set key=`.

    YAML reads `--set name=2024` as an integer and `name=no` as a boolean, yet on the command
    line a user typing into a text field means the text; converting back with str() would
    turn `007` into `7` and `no` into `False`. Fields with a fixed set of choices
    (data.dataset, ...) keep YAML's reading, so `data.dataset=no` is still refused, by name.
    """
    if isinstance(value, bool | int | float) and _is_free_text(key):
        return text
    return value


def _is_free_text(key: str) -> bool:
    """Whether dotted key names a string field without fixed choices (name, data.path)."""
    cls: Any = Config
    *parents, leaf = key.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls).get(part)
        if cls is None or not dataclasses.is_dataclass(cls):
            return False
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if leaf not in fields:
        return False
    hint = typing.get_type_hints(cls)[leaf]
    return str in (typing.get_args(hint) or (hint,)) and not fields[leaf].metadata["choices"]


def _set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted key in raw, walking the schema (not raw) so a path through a leaf fails.

    Walking raw alone let `train.steps.x=1` create a mapping where an integer belongs when
    no file had set train.steps, and a later `train.steps=5` then silently replaced it.
    """
    parts = key.split(".")
    if not all(parts):
        raise WganError(f"config key {key!r} has an empty part")
    *parents, leaf = parts
    node, cls, prefix = raw, Config, ""
    for part in parents:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise WganError(_unknown_key(prefix + part, [prefix + n for n in fields]))
        hint = typing.get_type_hints(cls)[part]
        if not dataclasses.is_dataclass(hint):
            raise WganError(f"config key {prefix + part} is a value, not a section")
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise WganError(f"{prefix + part} must be a mapping, got {_kind(child)}")
        node, cls, prefix = child, hint, f"{prefix}{part}."
    node[leaf] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass cls from raw, naming the offending dotted key in every error."""
    where = prefix.rstrip(".") or "the config"
    if not isinstance(raw, dict):
        empty = " (leave the section out to keep its defaults)" if raw is None and prefix else ""
        raise WganError(f"{where} must be a mapping, got {_kind(raw)}{empty}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise WganError(_unknown_key(prefix + str(key), [prefix + n for n in fields]))
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], f"{prefix}{name}.")
        else:
            values[name] = _coerce(raw[name], hint, f.metadata, prefix + name)
    return cls(**values)


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(known)}"
    return f"unknown config key '{key}'{hint}"


def _coerce(value: Any, hint: Any, meta: dict[str, Any], key: str) -> Any:
    """Check one leaf against its type, choices and bound; `1e-4` strings become floats."""
    optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
    if value is None:
        if optional:
            return None
        raise WganError(f"{key} needs a value ({meta['doc']})")
    base = next(a for a in hint.__args__ if a is not type(None)) if optional else hint
    if typing.get_origin(base) is tuple:
        if not isinstance(value, list | tuple):
            raise WganError(f"{key} must be a list of integers, got {_kind(value)} {value!r}")
        item_meta = {**meta, "choices": ()}
        return tuple(_coerce(v, int, item_meta, f"{key}[{i}]") for i, v in enumerate(value))
    if base is bool:
        if not isinstance(value, bool):
            raise WganError(f"{key} must be true or false, got {_kind(value)} {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = _sweep_hint(key, value)
            raise WganError(f"{key} must be an integer, got {_kind(value)} {value!r}{hint}")
    elif base is float:
        value = _as_float(value, key)
    elif base is str:
        value = _as_str(value, meta["choices"], key)
    if meta["gt"] is not None and value <= meta["gt"]:
        raise WganError(f"{key} must be > {meta['gt']:g}, got {value!r}")
    if meta["ge"] is not None and value < meta["ge"]:
        raise WganError(f"{key} must be >= {meta['ge']:g}, got {value!r}")
    return value


#: Fields a sweep option fills: a list there is a sweep, which the option spells.
SWEEP_OPTIONS = {"constraint.c": "--c", "constraint.gp_lambda": "--gp-lambda", "seed": "--seeds"}
_BOOLEAN_HINT = "unquoted yes, no, on, off, true and false are YAML booleans: quote the value"


def _sweep_hint(key: str, value: Any) -> str:
    """For a list given to a swept field: point at the sweep option that takes the list."""
    option = SWEEP_OPTIONS.get(key)
    if option is None or not isinstance(value, list):
        return ""
    return f" (to sweep several values, use {option} on the command line)"


def _as_str(value: Any, choices: tuple[str, ...], key: str) -> str:
    """A string leaf; a free-text one (no choices) also takes a number as its YAML text.

    `name: 2024` means the name "2024", but a YAML boolean is refused rather than read back as
    "False": the user wrote `no` or `off`, and only quoting keeps that spelling.
    """
    want = f"one of {', '.join(choices)};" if choices else "a string,"
    if isinstance(value, bool):
        raise WganError(f"{key} must be {want} got the YAML boolean {value!r} ({_BOOLEAN_HINT})")
    if not choices and isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise WganError(f"{key} must be {want} got {_kind(value)} {value!r}")
    if choices and value not in choices:
        raise WganError(f"{key} must be {want} got {value!r}")
    return value


def _as_float(value: Any, key: str) -> float:
    """PyYAML reads `1e-4` (no dot) as a string; users mean the number."""
    if isinstance(value, bool):
        raise WganError(f"{key} must be a number, got the YAML boolean {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            raise WganError(f"{key} must be a number, got {value!r}") from None
    else:
        hint = _sweep_hint(key, value)
        raise WganError(f"{key} must be a number, got {_kind(value)} {value!r}{hint}")
    if not math.isfinite(out):
        raise WganError(f"{key} must be finite, got {value!r}")
    return out


def _kind(value: Any) -> str:
    return {bool: "boolean", list: "a list", dict: "a mapping", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _check_cross_fields(cfg: Config) -> None:
    if cfg.data.dataset in FILE_DATASETS and cfg.data.path is None:
        raise WganError(f"data.dataset {cfg.data.dataset} needs data.path, the file to read")
    if cfg.data.dataset not in FILE_DATASETS and cfg.data.path is not None:
        raise WganError(
            f"data.path does nothing for the built-in data set {cfg.data.dataset!r} "
            f"(it is read for {' and '.join(FILE_DATASETS)})"
        )
    for net in ("critic", "generator"):
        if getattr(cfg, net).kind == "conv" and cfg.data.dataset not in IMAGE_DATASETS:
            raise WganError(
                f"{net}.kind conv needs an image data set ({', '.join(IMAGE_DATASETS)}), "
                f"not {cfg.data.dataset}"
            )
    if cfg.critic.norm != "none" and cfg.critic.kind != "conv":
        raise WganError(f"critic.norm {cfg.critic.norm} applies to the conv critic only")
    for step in cfg.train.hist_steps:
        if step > cfg.train.steps or step % cfg.train.log_every:
            raise WganError(
                f"train.hist_steps: {step} must be a multiple of train.log_every "
                f"({cfg.train.log_every}) no larger than train.steps ({cfg.train.steps})"
            )
    if cfg.train.log_every > cfg.train.steps:
        raise WganError(
            f"train.log_every ({cfg.train.log_every}) must not exceed train.steps "
            f"({cfg.train.steps})"
        )
    if cfg.train.steps % cfg.train.log_every:
        raise WganError(
            f"train.steps ({cfg.train.steps}) must be a multiple of train.log_every "
            f"({cfg.train.log_every}): each metric row closes one compiled chunk"
        )
