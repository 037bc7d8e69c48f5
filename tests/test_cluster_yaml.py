"""cluster.yaml: a valid Ray cluster-launcher config whose setup installs this project."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    assert config["head_node_type"] in config["available_node_types"]
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}, "the head runs no trials"


def test_setup_commands_install_this_checkout():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    (remote, local), = config["file_mounts"].items()
    project = tomllib.loads((ROOT / local / "pyproject.toml").read_text())["project"]
    assert project["name"] == "lungsweep" and "lungsweep" in project["scripts"]
    installs = [c for c in config["setup_commands"] if "pip install" in c and remote in c]
    assert installs == [f"python3 -m pip install -e {remote}"]
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
