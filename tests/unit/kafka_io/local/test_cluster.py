"""The local cluster's configuration, rendering and bookkeeping, without starting a JVM.

Ports must never clash (a clash would only show as a node failing to start), the
quorum must name every node, the rendered node config must carry the replication
settings the failover test relies on, and `broker stop`/`status` must find a
cluster by its data dir and never signal a pid that is not that node's broker.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from streamrec.cli.main import main
from streamrec.common.errors import ConfigError
from streamrec.kafka_io.errors import BrokerError
from streamrec.kafka_io.local.cluster import ClusterNode, LocalCluster, new_cluster_id, nodes_in
from streamrec.kafka_io.local.config import (
    MIN_INSYNC_REPLICAS,
    OFFSETS_PARTITIONS,
    REPLICATION_FACTOR,
    ClusterConfig,
)


def properties(path: Path) -> dict[str, str]:
    """key=value lines of a Java properties file (no comments, no blanks)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_consecutive_ports_put_the_controllers_after_the_clients() -> None:
    cfg = ClusterConfig.consecutive(3, port=9092)
    assert cfg.ports == (9092, 9093, 9094)
    assert cfg.controller_ports == (9095, 9096, 9097)
    assert cfg == ClusterConfig()  # the defaults are the documented scheme
    assert cfg.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert cfg.voters == "1@127.0.0.1:9095,2@127.0.0.1:9096,3@127.0.0.1:9097"
    five = ClusterConfig.consecutive(5, port=20000, controller_port=21000)
    assert five.ports == (20000, 20001, 20002, 20003, 20004)
    assert five.controller_ports == (21000, 21001, 21002, 21003, 21004)
    assert list(five.node_ids) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ports": (1, 2), "controller_ports": (3, 4)}, "at least 3 nodes"),
    ({"ports": (1, 2, 3), "controller_ports": (4, 5)}, "one controller port per node"),
    ({"ports": (1, 2, 3), "controller_ports": (4, 5, 3)}, "must all differ"),
    ({"ports": (1, 1, 3), "controller_ports": (4, 5, 6)}, "must all differ"),
    ({"ports": (0, 2, 3), "controller_ports": (4, 5, 6)}, r"1\.\.65535"),
    ({"ports": (1, 2, 3), "controller_ports": (4, 5, 65536)}, r"1\.\.65535"),
])
def test_config_refuses_clashing_or_too_few_ports(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClusterConfig(**kwargs)


def test_consecutive_ports_that_overlap_are_refused() -> None:
    # The single broker's controller port sits inside a cluster's client range.
    with pytest.raises(ConfigError, match="must all differ"):
        ClusterConfig.consecutive(3, port=9092, controller_port=9093)


def test_each_node_has_its_own_ports_and_data_dir(tmp_path: Path) -> None:
    cfg = ClusterConfig(ports=(101, 102, 103), controller_ports=(201, 202, 203),
                        data_dir=tmp_path / "c")
    node = cfg.node_config(2)
    assert (node.port, node.controller_port) == (102, 202)
    assert node.data_dir == tmp_path / "c" / "node-2"
    assert node.jvm_options == cfg.jvm_options
    assert "-Xmx512m" in cfg.jvm_options
    with pytest.raises(ConfigError, match="no node 4"):
        cfg.node_config(4)
    with pytest.raises(ConfigError, match="no node 0"):
        LocalCluster(cfg).node(0)


def test_rendered_node_config_is_a_replicated_static_quorum(tmp_path: Path) -> None:
    cfg = ClusterConfig(ports=(101, 102, 103), controller_ports=(201, 202, 203),
                        data_dir=tmp_path / "c")
    cluster = LocalCluster(cfg)
    rendered = {n: properties(cluster.node(n).render()) for n in cfg.node_ids}
    voters = "1@127.0.0.1:201,2@127.0.0.1:202,3@127.0.0.1:203"

    for n, props in rendered.items():
        assert props["node.id"] == str(n)
        assert props["process.roles"] == "broker,controller"
        assert props["controller.quorum.voters"] == voters
        assert "controller.quorum.bootstrap.servers" not in props  # that is the dynamic form
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{100 + n},CONTROLLER://127.0.0.1:{200 + n}")
        assert props["log.dirs"] == str(tmp_path / "c" / f"node-{n}" / "kraft-combined-logs")
    props = rendered[1]
    assert REPLICATION_FACTOR == 3
    assert MIN_INSYNC_REPLICAS == 2
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr",
                "share.coordinator.state.topic.min.isr"):
        assert props[key] == "2", key
    assert props["offsets.topic.num.partitions"] == str(OFFSETS_PARTITIONS)
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["log.index.size.max.bytes"] == "1048576"  # see server.properties.template
    assert not any("$" in v for v in props.values())  # every placeholder filled


def test_nodes_share_one_cluster_id_kept_across_instances(tmp_path: Path) -> None:
    cfg = ClusterConfig(ports=(101, 102, 103), controller_ports=(201, 202, 203),
                        data_dir=tmp_path / "c")
    first = LocalCluster(cfg)
    ids = {node.cluster_id for node in first.nodes.values()}
    assert len(ids) == 1
    # A node formatted earlier (the id file lost) decides the id of the others.
    meta = cfg.node_dir(2) / "kraft-combined-logs" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\ncluster.id=Q2x1c3RlcklkT2ZUZXN0\nnode.id=2\n")
    assert {n.cluster_id for n in LocalCluster(cfg).nodes.values()} == {"Q2x1c3RlcklkT2ZUZXN0"}


def test_new_cluster_ids_look_like_kafkas() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_a_cluster_is_found_by_its_data_dir(tmp_path: Path) -> None:
    assert nodes_in(tmp_path / "missing") == 0
    assert nodes_in(tmp_path) == 0
    cfg = ClusterConfig(ports=(101, 102, 103), controller_ports=(201, 202, 203),
                        data_dir=tmp_path)
    for node in LocalCluster(cfg).nodes.values():
        node.render()
    (tmp_path / "node-x").mkdir()
    (tmp_path / "node-9").mkdir()  # no server.properties: not a node
    assert nodes_in(tmp_path) == 3


def test_status_and_stop_of_a_cluster_that_never_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    cluster = LocalCluster(ClusterConfig(ports=(101, 102, 103), controller_ports=(201, 202, 203),
                                         data_dir=tmp_path))
    state = cluster.status()
    assert not state.running
    assert [n.pid for n in state.nodes] == [None, None, None]
    assert state.bootstrap == "127.0.0.1:101,127.0.0.1:102,127.0.0.1:103"
    assert cluster.stop() is False
    with pytest.raises(BrokerError, match="node 2 is not running"):
        cluster.kill_node(2)

    assert main(["broker", "status", "--data-dir", str(tmp_path), "--nodes", "3",
                 "--port", "29092"]) == 3
    out = capsys.readouterr().out
    assert "running: no (0 of 3 nodes)" in out
    assert "bootstrap: 127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094" in out
    assert main(["broker", "stop", "--data-dir", str(tmp_path), "--nodes", "3"]) == 0
    assert "no cluster of 3 running" in capsys.readouterr().out


def test_status_without_nodes_finds_the_cluster_in_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    for node in LocalCluster(ClusterConfig.consecutive(3, port=29092, data_dir=tmp_path)
                             ).nodes.values():
        node.render()
    assert main(["broker", "status", "--data-dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    # The addresses come from the rendered configs, not from the (default) flags.
    assert "bootstrap: 127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094" in out
    assert main(["broker", "start", "--nodes", "2", "--data-dir", str(tmp_path)]) == 2
    assert "at least 3 nodes" in capsys.readouterr().err


def test_a_recorded_pid_that_is_not_the_node_is_never_signalled(tmp_path: Path) -> None:
    cfg = ClusterConfig(ports=(101, 102, 103), controller_ports=(201, 202, 203),
                        data_dir=tmp_path)
    node: ClusterNode = LocalCluster(cfg).node(1)
    node.render()
    node.pid_path.write_text(f"{os.getpid()}\n")  # a stale pidfile, reused by this test
    assert node.pid() is None
    with pytest.raises(BrokerError, match="not running"):
        node.kill()
    assert LocalCluster(cfg).stop() is False  # and this process is still alive to say so
