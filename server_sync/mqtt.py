"""The server's MQTT v5 client set-up: credentials, TLS and a persistent session."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server_sync.config import MqttSettings

# paho's reconnect back-off (first retry, longest wait), in seconds
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30


def make_client(settings: MqttSettings, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls_ca:
        client.tls_set(
            ca_certs=str(settings.tls_ca),
            certfile=str(settings.tls_cert) if settings.tls_cert else None,
            keyfile=str(settings.tls_key) if settings.tls_key else None,
        )
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    return client


def connect_properties(settings: MqttSettings) -> Properties:
    """A session the broker keeps while we are away, and our flow-control window."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.session_expiry_s
    props.ReceiveMaximum = settings.receive_maximum
    return props
