"""Parameter rules: one Interval per rule, one message that quotes the value and the rule."""
from __future__ import annotations

import json
from numbers import Real

import numpy as np
import pytest

from ensemble._checks import Interval, check_param, plain, validate_params
from ensemble import CALIBRATORS, COMBINERS, EnsembleError


@pytest.mark.parametrize(
    ("value", "rules", "match"),
    [
        (0, Interval(int, 1, None), r"x must be a positive integer, got 0$"),
        (True, Interval(int, 1, None), r"x must be a positive integer, got True$"),  # bool is no count
        (3.0, Interval(int, 1, None), r"x must be a positive integer, got 3.0$"),
        (1, Interval(int, 2, None), r"x must be an integer >= 2, got 1$"),
        (5, Interval(int, 0, 4, closed="left"), r"x must be an integer in \[0, 4\), got 5$"),
        (float("nan"), Interval(Real, 0, None, closed="neither"), r"x must be a number > 0, got nan$"),
        ("1", Interval(Real, 0, 1), r"x must be a number in \[0, 1\], got '1'$"),
        (-1, [None, Interval(int, 0, None)], r"x must be None or an integer >= 0, got -1$"),
        (2.0, Interval(Real, None, 1, closed="right"), r"x must be a number <= 1, got 2.0; say why$"),
    ],
)
def test_check_param_refuses_with_the_value_and_the_rule(value, rules, match: str) -> None:
    with pytest.raises(EnsembleError, match=match):
        check_param("x", value, rules, hint="say why" if "why" in match else "")


@pytest.mark.parametrize(
    ("value", "rules"),
    [
        (np.int64(3), Interval(int, 1, None)),
        (1, Interval(Real, 0, 1)),
        (np.float32(0.5), Interval(Real, 0, 1, closed="neither")),
        (None, [None, Interval(int, 0, None)]),
    ],
)
def test_check_param_accepts_numpy_scalars_and_none(value, rules) -> None:
    assert check_param("x", value, rules) is None


@pytest.mark.parametrize("cls", [*COMBINERS.values(), *CALIBRATORS.values()], ids=lambda c: c.__name__)
def test_default_parameters_satisfy_their_declared_rules(cls) -> None:
    est = cls()
    assert set(est._parameter_constraints) <= set(est.get_params())
    assert validate_params(est) is None


def test_plain_turns_numpy_into_json() -> None:
    value = {"a": np.float64(0.5), "b": np.arange(3), "c": [np.int64(2), (np.bool_(True), "s")], "d": None}
    assert plain(value) == {"a": 0.5, "b": [0, 1, 2], "c": [2, [True, "s"]], "d": None}
    json.dumps(plain(value))
