"""A test peer playing the server's side of the MQTT contract on a real broker.

Not a mock: it is a real paho MQTT v5 client on the real Mosquitto broker, doing what the contract
says a server does: receive batches and clips, "store" them (here: a dict keyed by id, so
re-sends are upserts) and then publish ``Ack`` QoS 1 on the device's acks topic. ``acking`` can
be turned off to play a server that is down; ``hostile`` payloads are published on the acks
topic before every real ack, to play a broken or malicious server.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from biovita.detection import (
    CLIPS_FILTER,
    DETECTIONS_FILTER,
    STATUS_FILTER,
    Ack,
    DetectionBatch,
    DeviceStatus,
    acks_topic,
    decode,
    encode,
    parse_topic,
)


class AckPeer:
    def __init__(
        self,
        host: str,
        port: int,
        acking: bool = True,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        hostile: list[bytes] = (),
    ) -> None:
        self.acking = acking
        self.hostile = list(hostile)
        self.received: list[DetectionBatch] = []  # every batch, acked or not, in arrival order
        self.stored: dict[str, object] = {}  # detection id -> Detection (upsert)
        self.clips: dict[str, bytes] = {}
        self.batches: list[DetectionBatch] = []
        self.statuses: list[DeviceStatus] = []
        self.extra: dict[str, bytes] = {}  # any other topic (e.g. Home Assistant discovery)
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="test-ack-peer",
            protocol=mqtt.MQTTv5,
        )
        self.client.reconnect_delay_set(0.2, 1.0)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self.wait(lambda: self.client.is_connected(), 10, "peer connection")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        for topic in (DETECTIONS_FILTER, CLIPS_FILTER, STATUS_FILTER, "homeassistant/#"):
            client.subscribe(topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic.startswith("homeassistant/"):
            self.extra[message.topic] = message.payload
            return
        parts = parse_topic(message.topic)
        if parts.kind == "status":
            self.statuses.append(decode(message.payload, DeviceStatus))
            return
        if parts.kind == "detections":
            batch = decode(message.payload, DetectionBatch)
            with self._lock:
                self.received.append(batch)
        if not self.acking:
            return
        if parts.kind == "detections":
            with self._lock:
                self.batches.append(batch)
                for d in batch.detections:
                    self.stored[d.id] = d
            ack = Ack(
                device_id=batch.device_id, seq=batch.seq, ids=[d.id for d in batch.detections]
            )
        else:
            with self._lock:
                self.clips[parts.clip_id] = message.payload
            ack = Ack(device_id=parts.device_id, clip_ids=[parts.clip_id])
        topic = acks_topic(parts.site_id, parts.device_id)
        for payload in self.hostile:
            client.publish(topic, payload, qos=1)
        client.publish(topic, encode(ack), qos=1)

    @staticmethod
    def wait(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
