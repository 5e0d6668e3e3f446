"""Pool configuration files: what is accepted and how errors read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linkserver.config import ConfigError, PoolConfig, ServerConfig, load_config, parse_config
from linkserver.launcher import RayOptions

TOML = """
default = "main"

[pools.main]
mode = "shared"
eval_timeout = 30
init = "x = 1"

[pools.big]
mode = "pool"
min = 0
max = 8
wait = 5.5
keepalive = 600
memory_mb = 2048
"""


def test_toml_and_json_give_the_same_pools(tmp_path: Path) -> None:
    toml_file = tmp_path / "pools.toml"
    toml_file.write_text(TOML)
    config = load_config(toml_file)
    assert config.default == "main"
    assert config.pool(None) == PoolConfig("main", "shared", eval_timeout=30, init="x = 1")
    big = config.pool("big")
    assert (big.mode, big.min, big.max, big.wait, big.keepalive, big.memory_mb) == (
        "pool", 0, 8, 5.5, 600, 2048)
    assert big.spec().memory_mb == 2048 and config.pool("main").spec().init == "x = 1"
    json_file = tmp_path / "pools.json"
    json_file.write_text(json.dumps({
        "default": "main",
        "pools": {"main": {"mode": "shared", "eval_timeout": 30, "init": "x = 1"},
                  "big": {"mode": "pool", "min": 0, "max": 8, "wait": 5.5, "keepalive": 600,
                          "memory_mb": 2048}},
    }))
    assert load_config(json_file) == config


def test_default_is_the_first_pool() -> None:
    config = parse_config({"pools": {"a": {}, "b": {"mode": "pool"}}})
    assert config.default == "a"
    with pytest.raises(KeyError):
        config.pool("nope")
    assert ServerConfig().pool("") == PoolConfig()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a table"),
        ({}, "needs a 'pools' table"),
        ({"pools": {}}, "needs a 'pools' table"),
        ({"pools": {"a": {}}, "extra": 1}, "unknown top-level key 'extra'"),
        ({"pools": {"a": 5}}, "pools.a must be a table"),
        ({"pools": {"a": {"size": 3}}}, "pools.a.size is not a pool setting"),
        ({"pools": {"a": {"max": "4"}}}, "pools.a.max must be int, not '4'"),
        ({"pools": {"a": {"max": True}}}, "pools.a.max must be int"),
        ({"pools": {"a": {"mode": "exclusive"}}}, "mode must be 'shared' or 'pool'"),
        ({"pools": {"a": {"backend": "maple"}}}, "backend must be one of"),
        ({"pools": {"a": {"mode": "pool", "min": 5, "max": 2}}}, "min <= max"),
        ({"pools": {"a": {"wait": -1}}}, "wait must not be negative"),
        ({"pools": {"a": {"eval_timeout": 0}}}, "eval_timeout must be positive"),
        ({"pools": {"a": {"memory_mb": 10}}}, "memory_mb below 64"),
        ({"pools": {"a": {"keepalive": 60}}}, "keepalive is for pool mode"),
        ({"pools": {"a b": {}}}, "letters, digits"),
        ({"pools": {"a": {}}, "default": "b"}, "default = 'b' names no pool"),
        ({"pools": {"a": {"placement": "yarn"}}}, "placement must be 'local' or 'ray'"),
        ({"pools": {"a": {"placement": "local", "ray": {}}}}, "pools.a.ray is for placement"),
        ({"pools": {"a": {"ray": 1}}}, "pools.a.ray must be a table"),
        ({"pools": {"a": {"ray": {"gpus": 1}}}}, "pools.a.ray.gpus is not a Ray setting"),
        ({"pools": {"a": {"ray": {"num_cpus": -1}}}}, "num_cpus must be a number of CPUs"),
        ({"pools": {"a": {"ray": {"num_cpus": True}}}}, "num_cpus must be a number"),
        ({"pools": {"a": {"ray": {"memory_mb": 1.5}}}}, "memory_mb must be a positive whole"),
        ({"pools": {"a": {"ray": {"resources": 3}}}}, "resources must be a table"),
        ({"pools": {"a": {"ray": {"resources": {"gpu_node": 0}}}}},
         "resources.gpu_node must be a positive amount"),
        ({"pools": {"a": {"ray": {"resources": {"CPU": 1}}}}}, "book CPU with num_cpus"),
        ({"pools": {"a": {"ray": {"namespace": ""}}}}, "namespace must be a non-empty string"),
        ({"pools": {"a": {}}, "server_id": "lab a"}, "server_id must be 1-64 letters"),
        ({"pools": {"a": {}}, "server_id": 7}, "server_id must be"),
    ],
)
def test_errors_name_the_setting(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(data)
    assert isinstance(info.value, ValueError)


def test_a_ray_table_becomes_what_each_kernel_books() -> None:
    config = parse_config({"pools": {
        "big": {"mode": "pool", "placement": "ray", "ray": {
            "num_cpus": 1, "memory_mb": 2048, "resources": {"gpu_node": 1, "a": 0.5},
            "namespace": "team"}},
        "here": {"placement": "local"},
        "either": {},
    }})
    big = config.pool("big")
    assert big.ray == RayOptions(1.0, 2048, (("a", 0.5), ("gpu_node", 1.0)), "team")
    assert big.ray.demand() == {"a": 0.5, "gpu_node": 1.0, "CPU": 1.0, "memory": 2048 * 2**20}
    assert big.ray.describe() == "num_cpus=1, memory_mb=2048, a=0.5, gpu_node=1"
    # Where each runs: "ray" and "local" are fixed; no placement follows --ray.
    assert [p.placed(None) for p in config.pools] == ["ray", "local", "local"]
    assert [p.placed("auto") for p in config.pools] == ["ray", "local", "ray"]
    assert config.pool("either").ray == RayOptions()  # the defaults: 1 CPU, "linkserver"


def test_a_server_id_names_the_server_on_the_cluster_and_defaults_to_host_and_port() -> None:
    from linkserver.service import KernelService

    config = parse_config({"pools": {"a": {}}, "server_id": "lab-a.1"})
    assert config.server_id == "lab-a.1"
    assert KernelService(0, "127.0.0.1", config=config).server_id == "lab-a.1"
    plain = parse_config({"pools": {"a": {}}})
    assert plain.server_id is None
    assert KernelService(31999, "127.0.0.1", config=plain).server_id.endswith("-31999")
    assert KernelService(0, "127.0.0.1", config=plain).server_id is None  # random per run


def test_a_ray_pool_without_a_ray_address_is_refused_before_anything_starts() -> None:
    from linkserver.service import KernelService

    config = parse_config({"pools": {"big": {"mode": "pool", "placement": "ray"}}})
    with pytest.raises(ValueError, match="start the server with --ray ADDRESS"):
        KernelService(0, "127.0.0.1", config=config)


def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[pools.a\nmode=")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config(bad_json)


def test_the_documented_example_is_valid() -> None:
    import re
    import tomllib

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    example, *others = re.findall(r"```toml\n(.*?)```", doc, flags=re.S)
    for other in others:  # the smaller examples (Ray placement) are valid too
        parse_config(tomllib.loads(other))
    config = parse_config(tomllib.loads(example))
    assert [p.name for p in config.pools] == ["main", "big"] and config.default == "main"
    assert config.pool("big").keepalive == 600
