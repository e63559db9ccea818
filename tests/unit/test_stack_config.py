"""Pure parts of the stack launcher: pinned versions, configuration text, ids, ports."""

import base64
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopscope.stack import artifacts, elasticsearch, kafka
from hopscope.stack.errors import PortInUseError
from hopscope.stack.ports import LOOPBACK, free_port, port_is_free, require_free


def test_pinned_versions_come_from_the_packaged_pom() -> None:
    versions = artifacts.pinned_versions()
    assert versions.kafka.startswith("4.")
    assert versions.elasticsearch.startswith("8.19.")


def test_cache_paths_are_versioned(tmp_path: Path) -> None:
    arts = artifacts.cached_artifacts(tmp_path)
    assert arts.kafka_libs == tmp_path / f"kafka-{arts.versions.kafka}" / "libs"
    assert not artifacts.is_cached(arts)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=200))
def test_cluster_ids_are_valid_kraft_ids(_: int) -> None:
    cid = kafka.new_cluster_id()
    assert len(cid) == 22 and not cid.startswith("-")
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_kafka_properties_bind_loopback_only(tmp_path: Path) -> None:
    text = kafka.server_properties(kafka.KafkaLayout(tmp_path), 19092, 19093)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["listeners"] == f"PLAINTEXT://{LOOPBACK}:19092,CONTROLLER://{LOOPBACK}:19093"
    assert props["controller.quorum.voters"] == f"1@{LOOPBACK}:19093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.dirs"] == str(tmp_path / "data")


def test_kafka_overrides_win(tmp_path: Path) -> None:
    text = kafka.server_properties(
        kafka.KafkaLayout(tmp_path), 1, 2, {"num.partitions": "6", "x.y": "z"}
    )
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["num.partitions"] == "6"
    assert props["x.y"] == "z"


def test_es_settings_disable_security_and_bind_loopback(tmp_path: Path) -> None:
    text = elasticsearch.node_settings(elasticsearch.EsLayout(tmp_path), 19200, 19300)
    assert "xpack.security.enabled: false" in text
    assert f"network.host: {LOOPBACK}" in text
    assert "http.port: 19200" in text and "discovery.type: single-node" in text


def test_port_in_use_is_named() -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(PortInUseError, match=rf"Kafka port {LOOPBACK}:{port} is already"):
            require_free(port, "Kafka")


def test_free_port_is_free() -> None:
    assert port_is_free(free_port())


def test_invalid_port_is_refused() -> None:
    with pytest.raises(PortInUseError, match="not a valid TCP port"):
        require_free(70000, "Elasticsearch HTTP")


def test_kafka_cluster_brokers_share_one_quorum_and_replicate(tmp_path: Path) -> None:
    controllers = [19093, 19095, 19097]
    for node in (1, 2, 3):
        overrides = kafka.cluster_overrides(node, controllers)
        text = kafka.server_properties(kafka.KafkaLayout(tmp_path), 19092, 19093, overrides)
        props = dict(line.split("=", 1) for line in text.splitlines())
        assert props["node.id"] == str(node)
        assert props["controller.quorum.voters"] == ",".join(
            f"{n}@{LOOPBACK}:{p}" for n, p in enumerate(controllers, 1)
        )
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["offsets.topic.replication.factor"] == "3"
    two = kafka.cluster_overrides(1, [1, 2])
    assert (two["default.replication.factor"], two["min.insync.replicas"]) == ("2", "2")
    with pytest.raises(ValueError, match=r"node must be within 1\.\.3"):
        kafka.cluster_overrides(4, controllers)


def test_es_cluster_nodes_discover_each_other(tmp_path: Path) -> None:
    cluster = elasticsearch.EsCluster(2, (19300, 19301, 19302))
    text = elasticsearch.node_settings(
        elasticsearch.EsLayout(tmp_path), 19201, 19301, None, cluster
    )
    assert "discovery.type" not in text
    assert "node.name: hopscope-local-2" in text
    assert f'discovery.seed_hosts: ["{LOOPBACK}:19300", "{LOOPBACK}:19301", ' in text
    assert (
        'cluster.initial_master_nodes: ["hopscope-local-1", "hopscope-local-2", '
        '"hopscope-local-3"]' in text
    )


def test_cluster_endpoints_list_every_node(tmp_path: Path) -> None:
    from hopscope.stack.launcher import ServiceState, StackOptions, StackState, service_kind

    state = StackState(str(tmp_path), "17", 0.0)
    for name, endpoint in [
        ("kafka", "127.0.0.1:1"), ("kafka-2", "127.0.0.1:2"),
        ("elasticsearch", "http://127.0.0.1:3"), ("elasticsearch-2", "http://127.0.0.1:4"),
    ]:  # fmt: skip
        state.services[name] = ServiceState(name, 1, 1, "v", "log", "marker", endpoint)
    assert state.kafka_bootstrap == "127.0.0.1:1,127.0.0.1:2"
    assert state.es_url == "http://127.0.0.1:3,http://127.0.0.1:4"
    assert service_kind("elasticsearch-3") == "elasticsearch"
    with pytest.raises(ValueError, match=r"es_nodes must be within 1\.\.5"):
        StackOptions(cache_dir=tmp_path, state_dir=tmp_path, es_nodes=0)


def test_templates_ask_for_a_replica_only_on_a_cluster() -> None:
    from hopscope.processors.templates import index_template

    assert index_template("p", "spans")["template"]["settings"]["number_of_replicas"] == 0
    assert index_template("p", "spans", 1)["template"]["settings"]["number_of_replicas"] == 1
