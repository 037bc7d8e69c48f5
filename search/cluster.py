"""The Ray cluster a sweep runs on: joined (or started) for the launch, and every node prepared before any trial.

    with connected(address):           # a local Ray when address is None; shut down after, if started here
        prepare_every_node(cfg, run_dir)
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from trainers import LungsweepError, TrainConfig, prepare_data

from .config import SweepConfig
from .storage import not_shared

__all__ = ["ClusterError", "connected", "prepare_every_node"]


class ClusterError(LungsweepError):
    """The Ray cluster named by --address cannot be reached."""


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[None]:
    """Ray for the duration of the block: the one already initialised in this process, or one started here
    (and shut down after the block) from `address`."""
    started_here = not ray.is_initialized()
    if started_here:
        # A local Ray starts with the CPUs and GPUs it finds, listening on loopback only;
        # "auto", HOST:PORT or ray://HOST:10001 joins a running cluster.
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address=_driver_ip(address))
        except ConnectionError as e:
            raise ClusterError(_unreachable(address, e)) from e
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str | None) -> None:
    """HOST:PORT and ray://HOST:PORT must accept a connection; Ray itself would retry for a minute or more."""
    if address is None or address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is not auto, HOST:PORT or ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ClusterError(_unreachable(address, e)) from e


def _unreachable(address: str | None, e: Exception) -> str:
    return (f"cannot reach a Ray cluster at --address {address!r} ({e}); start it first (ray start --head, "
            "or ray up cluster.yaml), check the host and port, or leave --address out to run on this machine")


def _driver_ip(address: str | None) -> str | None:
    """This machine's address as Ray should see it: loopback for a local Ray or a loopback cluster.

    Ray otherwise resolves 127.0.0.1 to the machine's network address; a cluster
    started on 127.0.0.N (tests, one-machine setups) must be joined from that address.
    """
    if address is None:
        return "127.0.0.1"
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


# --- data and storage, checked on every node before any trial starts ---------------


def prepare_every_node(cfg: SweepConfig, run_dir: Path | None) -> None:
    """Decode the images once per node and size, and check that every node sees the data and RUN_DIR."""
    marker = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        marker = run_dir / f".storage-check-{uuid.uuid4().hex}"
        marker.write_text("lungsweep")
    base = cfg.base_train_config()
    configs = [dataclasses.replace(base, image_size=size).to_dict() for size in cfg.image_sizes()]
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    try:
        tasks = [
            _prepare_on_node.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False), num_cpus=0
            ).remote(configs, str(marker) if marker else None)
            for n in nodes
        ]
        for node, problem in zip(nodes, ray.get(tasks)):
            if problem is None:
                continue
            where = f"node {node.get('NodeManagerAddress')} ({node['NodeID'][:8]})"
            if problem.startswith("storage"):
                raise not_shared(run_dir, where)
            raise LungsweepError(f"on {where}: {problem}")
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


@ray.remote(max_retries=0)
def _prepare_on_node(configs: list[dict[str, Any]], marker: str | None) -> str | None:
    if marker is not None and not os.path.exists(marker):
        return "storage"
    try:
        for values in configs:
            prepare_data(TrainConfig.from_dict(values))
    except LungsweepError as e:
        return str(e)
    return None
