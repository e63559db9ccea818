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
