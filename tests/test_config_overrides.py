"""Dotted-path scenario overrides (used by sweep grids and compare --vary)."""

import pytest

from fleetsched.cli.options import default_scenario
from fleetsched.core.config import apply_overrides, parse_override_value
from fleetsched.errors import InputError


def test_paths_aliases_and_params() -> None:
    s = default_scenario()
    t = apply_overrides(
        s,
        {
            "cluster.0.count": 8,
            "router": "cache_aware",
            "policies.router.params.cache_threshold": 0.4,
            "rate_scale": 2,
            "cluster.0.engine.max_num_seqs": 64,
        },
    )
    assert t.cluster[0].count == 8
    assert t.policies.router.name == "cache_aware"
    assert t.policies.router.params == {"cache_threshold": 0.4}
    assert t.workload.transforms.rate_scale == 2.0
    assert t.cluster[0].engine.max_num_seqs == 64
    assert s.cluster[0].count == 4  # the original is untouched


def test_new_policy_name_clears_old_params() -> None:
    s = apply_overrides(default_scenario(), {"policies.router.params.x": 1})
    assert apply_overrides(s, {"router": "random"}).policies.router.params == {}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"cluster.3.count": 1}, "cluster.3.count: cluster.3: no item '3' (the list has 1 items)"),
        ({"cluster.0.cnt": 1}, "cluster.0.cnt: no such field (known: count,"),
        ({"cluster.0.count": "x"}, "cluster.0.count: Input should be a valid integer"),
        ({"seed.x": 1}, "seed.x: seed is not a section"),
    ],
)
def test_bad_paths_name_the_field(override: dict, message: str) -> None:
    with pytest.raises(InputError) as e:
        apply_overrides(default_scenario(), override)
    assert str(e.value).startswith(message)


def test_values_parse_as_yaml() -> None:
    assert parse_override_value("8") == 8
    assert parse_override_value("0.5") == 0.5
    assert parse_override_value("true") is True
    assert parse_override_value("cache_aware") == "cache_aware"
