"""search.space: one mapping from a space kind to its Optuna distribution, for sampling and for rebuilding."""
from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search.config import parse_sweep_config
from search.record import sweep_record
from search.space import KINDS, ParamSpec, distribution, parse_space, suggest
from trainers import ConfigError

SPACE = {
    "optimizer": {"choice": ["adamw", "sgd"]},
    "momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}},
    "lr": {"loguniform": [1.0e-4, 3.0e-3]},
    "unfreeze_blocks": {"int": [1, 4]},
    "batch_size": {"logint": [8, 64]},
    "pretrained": {"choice": [True, False]},
    "layer_decay": {"uniform": [0.6, 0.9], "when": {"pretrained": True, "optimizer": ["adamw"]}},
}


@pytest.mark.parametrize(
    "spec, expected",
    [
        (ParamSpec("optimizer", "choice", ("adamw", "sgd")), CategoricalDistribution(["adamw", "sgd"])),
        (ParamSpec("momentum", "uniform", (0.8, 0.95)), FloatDistribution(0.8, 0.95)),
        (ParamSpec("lr", "loguniform", (1e-4, 3e-3)), FloatDistribution(1e-4, 3e-3, log=True)),
        (ParamSpec("unfreeze_blocks", "int", (1, 4)), IntDistribution(1, 4)),
        (ParamSpec("batch_size", "logint", (8, 64)), IntDistribution(8, 64, log=True)),
    ],
    ids=lambda v: v.kind if isinstance(v, ParamSpec) else "",
)
def test_each_kind_has_its_distribution(spec, expected):
    assert distribution(spec) == expected


def test_the_table_covers_every_kind_and_only_those():
    assert KINDS == ("choice", "uniform", "loguniform", "int", "logint")
    with pytest.raises(ConfigError, match=r"parameter 'lr' has unknown kind 'normal'; known kinds: choice, uniform"):
        distribution(ParamSpec("lr", "normal", (0.0, 1.0)))


def test_a_spec_round_trips_through_its_record():
    cfg = parse_sweep_config({"space": SPACE})
    records = sweep_record(cfg)["space"]
    assert [r["name"] for r in records] == list(SPACE)
    for spec, record in zip(cfg.space, records):
        rebuilt = ParamSpec.from_record(record)
        assert rebuilt == spec
        assert distribution(rebuilt) == distribution(spec)  # the report's study sees what the sweep sampled


def test_a_spec_from_yaml_style_when_matches_the_parsed_one():
    (spec,) = parse_space({"momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}}}, fixed={"optimizer": "sgd"})
    record = {"name": "momentum", "kind": "uniform", "values": [0.8, 0.95], "when": {"optimizer": "sgd"}}
    assert ParamSpec.from_record(record) == spec


@pytest.mark.parametrize(
    "record, match",
    [
        (["lr", "loguniform"], r"must be a mapping with name, kind, values, when"),
        ({"name": "lr", "values": [1e-4, 1e-2]}, r"lacks 'kind'; it needs name, kind, values, when"),
        ({"name": "lr", "kind": "normal", "values": [0, 1]}, r"'lr' has unknown kind 'normal'; known kinds: choice"),
        ({"name": "lr", "kind": "uniform", "values": []}, r"'lr' needs a non-empty list of values, got \[\]"),
        ({"name": "m", "kind": "uniform", "values": [0, 1], "when": ["optimizer"]}, r"'m': 'when' must be \[\[name"),
    ],
)
def test_a_bad_record_names_the_entry(record, match):
    with pytest.raises(ConfigError, match=match):
        ParamSpec.from_record(record)


def _sampled(seed: int, n: int = 40) -> tuple[tuple[ParamSpec, ...], list[dict]]:
    specs = parse_sweep_config({"space": SPACE}).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    seen = []
    for _ in range(n):
        trial = study.ask()
        seen.append(suggest(trial, specs, fixed={}))
        study.tell(trial, 0.0)
    return specs, seen


def test_suggested_values_lie_inside_their_distribution():
    specs, seen = _sampled(seed=0)
    for params in seen:
        for spec in specs:
            if spec.name in params:
                assert _inside(params[spec.name], distribution(spec)), (spec.name, params[spec.name])


def _inside(value: object, dist: optuna.distributions.BaseDistribution) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return any(value == c and type(value) is type(c) for c in dist.choices)
    if isinstance(dist, IntDistribution) and not isinstance(value, int):
        return False
    return dist.low <= value <= dist.high


def test_suggest_records_the_same_distribution_on_the_trial():
    specs, _ = _sampled(seed=1, n=1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    params = suggest(trial, specs, fixed={})
    frozen = study.tell(trial, 0.0)
    by_name = {spec.name: spec for spec in specs}
    assert set(frozen.distributions) == set(params)
    for name, dist in frozen.distributions.items():
        assert dist == distribution(by_name[name])


def test_conditionals_are_sampled_only_when_their_condition_holds():
    _, seen = _sampled(seed=2)
    for params in seen:
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert ("layer_decay" in params) == (params["pretrained"] is True and params["optimizer"] == "adamw")
    assert any("momentum" in p for p in seen) and any("layer_decay" in p for p in seen)


def test_a_fixed_train_value_can_switch_a_conditional():
    specs = parse_space({"momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}}}, fixed={"optimizer": "sgd"})
    study = optuna.create_study()
    assert "momentum" in suggest(study.ask(), specs, fixed={"optimizer": "sgd"})
    assert suggest(study.ask(), specs, fixed={"optimizer": "adamw"}) == {}


def test_importing_the_space_and_the_report_never_imports_ray():
    code = "import sys, ensemble.report.page, search.space; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
