"""A broker the recorder cannot reach: logged once per outage with its address and the reason."""

from __future__ import annotations

import logging

import pytest

from device.config import MqttSection
from device.store import Store
from device.sync import MqttSync
from tests.device.ack_peer import AckPeer
from tests.device.test_sync import _status
from tests.support.mosquitto import free_port


def _sync(tmp_path, port: int) -> tuple[MqttSync, Store]:
    store = Store(tmp_path / "log.db")
    cfg = MqttSection(host="127.0.0.1", port=port, reconnect_min_s=0.1, reconnect_max_s=0.2)
    return MqttSync(store, cfg, "rec-1", "marsh", _status), store


def _failures(caplog, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "device.sync" and r.levelno == level and "mqtt broker" in r.getMessage()
    ]


def test_a_wrong_broker_address_is_logged_once_with_the_address_and_the_reason(tmp_path, caplog):
    port = free_port()  # bound and released: nothing listens there, connects are refused
    caplog.set_level(logging.DEBUG, logger="device.sync")
    sync, store = _sync(tmp_path, port)
    sync.start()
    try:
        AckPeer.wait(lambda: sync.connect_failures >= 4, 30, "four refused connects")
    finally:
        sync.stop()
        store.close()
    (first,) = _failures(caplog, logging.ERROR)
    text = first.getMessage()
    assert f"127.0.0.1:{port}" in text and "ConnectionRefusedError" in text, text
    retries = _failures(caplog, logging.DEBUG)
    assert len(retries) >= 3 and all(f"127.0.0.1:{port}" in r.getMessage() for r in retries)
    assert not sync.connected.is_set() and sync.network_alive() is False


@pytest.mark.mqtt
def test_each_outage_is_logged_once_again_after_a_connection(mosquitto, tmp_path, caplog):
    mosquitto.stop()
    caplog.set_level(logging.DEBUG, logger="device.sync")
    sync, store = _sync(tmp_path, mosquitto.port)
    sync.start()
    try:
        AckPeer.wait(lambda: sync.connect_failures >= 2, 30, "the first outage")
        mosquitto.start()
        AckPeer.wait(sync.connected.is_set, 30, "the connection")
        assert sync.connect_failures == 0
        mosquitto.stop()
        AckPeer.wait(lambda: sync.connect_failures >= 2, 30, "the second outage")
    finally:
        sync.stop()
        store.close()
    assert len(_failures(caplog, logging.ERROR)) == 2  # one per outage, not one per retry
