"""The search space: YAML specs turned into Optuna define-by-run suggestions.

    lr:        {loguniform: [1.0e-4, 3.0e-3]}
    optimizer: {choice: [adamw, sgd]}
    momentum:  {uniform: [0.8, 0.95], when: {optimizer: sgd}}   # conditional

Kinds: choice, uniform, loguniform, int, logint. `when` names earlier parameters
(or fixed train values) and the values they must take for this one to be sampled.

`distribution(spec)` is the one mapping from a kind to an Optuna distribution: `suggest`
samples from it and the report rebuilds a finished sweep's study with it, so a sampled
value and a recorded one always mean the same thing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from trainers import TrainConfig
from trainers.errors import ConfigError

__all__ = ["KINDS", "ParamSpec", "distribution", "parse_space", "suggest"]

# kind -> its Optuna distribution, from the spec's values (the choices, or low and high)
_DISTRIBUTIONS: dict[str, Callable[[tuple[Any, ...]], BaseDistribution]] = {
    "choice": lambda v: CategoricalDistribution(list(v)),
    "uniform": lambda v: FloatDistribution(float(v[0]), float(v[1])),
    "loguniform": lambda v: FloatDistribution(float(v[0]), float(v[1]), log=True),
    "int": lambda v: IntDistribution(int(v[0]), int(v[1])),
    "logint": lambda v: IntDistribution(int(v[0]), int(v[1]), log=True),
}
KINDS = tuple(_DISTRIBUTIONS)
RECORD_KEYS = ("name", "kind", "values", "when")
TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}
# Decoded once per sweep for each size, so the image size can only be a choice.
CHOICE_ONLY = {"image_size"}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str
    values: tuple[Any, ...]  # the choices, or (low, high)
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def contains(self, value: Any) -> bool:
        """Whether `value` is one this parameter can take."""
        if self.kind == "choice":
            return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in self.values)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind in ("int", "logint") and not isinstance(value, int):
            return False
        return self.values[0] <= value <= self.values[1]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ParamSpec:
        """The spec again from its JSON form in the sweep record ({"name", "kind", "values", "when"})."""
        if not isinstance(record, Mapping):
            raise ConfigError(
                f"a recorded space entry must be a mapping with {', '.join(RECORD_KEYS)}, got {record!r}")
        missing = [key for key in RECORD_KEYS[:3] if key not in record]
        if missing:
            raise ConfigError(f"recorded space entry {record!r} lacks {missing[0]!r}; it needs {', '.join(RECORD_KEYS)}")
        name, kind, values = record["name"], record["kind"], record["values"]
        if kind not in KINDS:
            raise ConfigError(f"recorded parameter {name!r} has unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"recorded parameter {name!r} needs a non-empty list of values, got {values!r}")
        when = record.get("when") or ()
        if isinstance(when, Mapping):  # as written in YAML, not as recorded
            when = [(key, v if isinstance(v, (list, tuple)) else [v]) for key, v in when.items()]
        conditions = []
        for entry in when:
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], (list, tuple))):
                raise ConfigError(f"recorded parameter {name!r}: 'when' must be [[name, [values]], ...], got {when!r}")
            conditions.append((str(entry[0]), tuple(entry[1])))
        return cls(name=name, kind=kind, values=tuple(values), when=tuple(conditions))


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution `spec` samples from (the same one for suggest and for a rebuilt study)."""
    make = _DISTRIBUTIONS.get(spec.kind)
    if make is None:
        raise ConfigError(f"parameter {spec.name!r} has unknown kind {spec.kind!r}; known kinds: {', '.join(KINDS)}")
    return make(spec.values)


def parse_space(raw: Mapping[str, Any], *, fixed: Mapping[str, Any] | None = None) -> tuple[ParamSpec, ...]:
    """Validate the `space:` mapping; messages quote the bad key or value."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"'space' must map parameter names to specs, got {raw!r}")
    known_before = set(fixed or ())
    specs = []
    for name, spec in raw.items():
        where = f"space.{name}"
        if name not in TRAIN_KEYS:
            raise ConfigError(f"{where}: {name!r} is not a training setting; allowed: {', '.join(sorted(TRAIN_KEYS))}")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping like {{choice: [a, b]}}, got {spec!r}")
        kinds = [k for k in spec if k in KINDS]
        extra = sorted(set(spec) - set(KINDS) - {"when"})
        if len(kinds) != 1 or extra:
            bad = extra[0] if extra else ", ".join(kinds) or "nothing"
            raise ConfigError(f"{where}: needs exactly one of {', '.join(KINDS)} (and optionally 'when'), got {bad!r}")
        kind = kinds[0]
        values = spec[kind]
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
        if name in CHOICE_ONLY and kind != "choice":
            raise ConfigError(f"{where}: must be a choice (each size is decoded once, before the sweep), got {kind!r}")
        if kind != "choice":
            values = _check_range(where, kind, values)
        else:
            for v in values:  # every choice must make a valid config on its own
                try:
                    TrainConfig.from_dict({name: v}, source=where)
                except ConfigError as e:
                    raise ConfigError(f"{where}: choice {v!r} is not allowed: {e}") from None
        when = spec.get("when") or {}
        if not isinstance(when, Mapping):
            raise ConfigError(f"{where}.when: expected a mapping like {{optimizer: sgd}}, got {when!r}")
        for cond in when:
            if cond not in known_before:
                raise ConfigError(f"{where}.when: {cond!r} must be a parameter listed before {name!r} or a fixed train value")
        specs.append(ParamSpec(
            name=name, kind=kind, values=tuple(values),
            when=tuple((k, tuple(v) if isinstance(v, list) else (v,)) for k, v in when.items()),
        ))
        known_before.add(name)
    return tuple(specs)


def _check_range(where: str, kind: str, values: list[Any]) -> tuple[Any, Any]:
    if len(values) != 2:
        raise ConfigError(f"{where}.{kind}: expected [low, high], got {values!r}")
    want = int if kind in ("int", "logint") else float
    try:
        low, high = (want(float(v)) if want is float else v for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{kind}: bounds must be numbers, got {values!r}") from None
    if want is int and not all(isinstance(v, int) for v in (low, high)):
        raise ConfigError(f"{where}.{kind}: bounds must be integers, got {values!r}")
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low must be below high, got {values!r}")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"{where}.{kind}: log bounds must be above 0, got {values!r}")
    return low, high


def suggest(trial: optuna.Trial, specs: tuple[ParamSpec, ...], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Sample one configuration, define-by-run: skipped conditionals are not sampled at all."""
    chosen: dict[str, Any] = {}
    for spec in specs:
        context = {**fixed, **chosen}
        if any(context.get(key) not in allowed for key, allowed in spec.when):
            continue
        chosen[spec.name] = _suggest_from(trial, spec.name, distribution(spec))
    return chosen


def _suggest_from(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    # The public suggest_* calls, which Ray's OptunaSearch records as the trial's config, fed from `dist`.
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"no suggest_* call for {type(dist).__name__} (parameter {name!r})")
