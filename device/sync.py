"""Store-and-forward over MQTT v5: the outbox to the server, acks back (DESIGN.md section 3).

* Batches of outbox rows go out as ``DetectionBatch`` (QoS 1) on ``detections_topic``, in outbox
  order, with a per-device ``seq`` persisted in SQLite; clips go as raw FLAC on ``clip_topic``.
* A row leaves the outbox only when the server's ``Ack`` names it: PUBACK only says the broker
  has the message. Rows not acked within ``ack_timeout_s`` (on the monotonic clock: a wall-clock
  step changes nothing) are sent again, oldest first (the server upserts by id, so a re-send is
  harmless), and after a (re)connect or a restart everything unacked is due at once.
* No ack, however malformed, leaves a callback: it is logged and counted (``acks_rejected``).
  paho's network thread is watched (``network_alive``): the daemon stops non-zero when it dies,
  and systemd starts it again.
* A broker that cannot be reached or refuses the login is logged once per outage (address and
  reason, at error level), then each retry at debug level: a wrong address is visible at once
  without filling the journal during a week offline.
* Persistent session (``clean_start=False`` + session expiry), so acks published while the
  device was offline wait at the broker; paho reconnects by itself with capped backoff.
* Retained ``DeviceStatus`` (online) on connect and every ``status_interval_s``; the same topic is
  the Last Will (online false) and gets a final offline status on a clean stop.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from biovita.detection import (
    MAX_CLIP_BYTES,
    MAX_PAYLOAD_BYTES,
    Ack,
    DetectionBatch,
    DeviceStatus,
    acks_topic,
    clip_topic,
    decode,
    detections_topic,
    encode,
    status_topic,
)
from device.config import MqttSection
from device.store import OutboxItem, Store, StoreError

log = logging.getLogger(__name__)

StatusProvider = Callable[[bool], DeviceStatus]


@dataclass
class _Inflight:
    """Outbox rows published and awaiting their ack, with the monotonic time they went."""

    items: list[OutboxItem]
    unacked: set[str]
    sent: float


def _guarded(callback: Callable) -> Callable:
    """A paho callback that never raises: paho re-raises callback errors and its thread dies."""

    @functools.wraps(callback)
    def wrapper(self: MqttSync, *args) -> None:
        try:
            callback(self, *args)
        except Exception:
            log.exception("mqtt %s failed; the connection carries on", callback.__name__)

    return wrapper


class MqttSync:
    def __init__(
        self,
        store: Store,
        cfg: MqttSection,
        device_id: str,
        site_id: str,
        status: StatusProvider,
    ) -> None:
        self.store, self.cfg = store, cfg
        self.device_id, self.site_id = device_id, site_id
        self.status = status
        self.connected = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._inflight: dict[int, _Inflight] = {}  # batch seq -> rows awaiting their ack
        self._clips_inflight: dict[str, _Inflight] = {}  # clip id -> its outbox row
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_status = 0.0
        self.connect_failures = 0  # in the current outage (since the last successful connect)
        self.acks_received = 0
        self.acks_rejected = 0
        self.batches_sent = 0
        self.client = self._make_client()

    # ---------------------------------------------------------------------------- set-up

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        client_id = cfg.client_id or f"biovita-{self.site_id}-{self.device_id}"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.resolved_password())
        if cfg.tls:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(cfg.tls_insecure)
        will = encode(self.status(False))
        client.will_set(self._status_topic, will, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @property
    def _status_topic(self) -> str:
        return status_topic(self.site_id, self.device_id)

    def start(self) -> None:
        """Connect in the background (a missing broker is not an error: the outbox waits)."""
        self.store.reset_sent()  # a new process has nothing in flight: all unacked rows are due
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        self.client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-sync", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New rows are in the outbox."""
        self._wake.set()

    def network_alive(self) -> bool:
        """Whether paho's network thread still runs (``loop_start`` sets it, its exit clears it).

        paho 2.x has no public accessor; without this thread nothing is sent, acked or
        reconnected, so the daemon watches it and stops non-zero for systemd to restart.
        """
        thread = getattr(self.client, "_thread", None)
        return thread is not None and thread.is_alive()

    def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the outbox to empty, a connection still being made included.

        A short ``listen --file`` over TLS or a WAN link ends before its first connect completes;
        the drain gives that connect its time rather than leaving the whole run queued.
        """
        deadline = time.monotonic() + timeout_s
        while self.store.queue_depth() and time.monotonic() < deadline and self.network_alive():
            self._wake.set()
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the sender, publish the final offline status, disconnect cleanly."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.connected.is_set() and self.network_alive():
            info = self.client.publish(self._status_topic, encode(self.status(False)), 1, True)
            with contextlib.suppress(RuntimeError, ValueError):  # lost link: the Will says it
                info.wait_for_publish(timeout=3)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------------- callbacks

    @_guarded
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._report_connect_failure(f"the broker refused the connection: {reason_code}")
            return
        self.connect_failures = 0
        log.info(
            "mqtt connected to %s:%s (session present: %s)",
            self.cfg.host,
            self.cfg.port,
            flags.session_present,
        )
        client.subscribe(acks_topic(self.site_id, self.device_id), qos=1)
        with self._lock:
            self._inflight.clear()
            self._clips_inflight.clear()
        self.store.reset_sent()  # whatever was in flight when the link dropped goes again
        self.connected.set()
        self._publish_status()
        if self.cfg.ha_discovery:
            self._publish_ha_discovery()
        self._wake.set()

    @_guarded
    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its ``except OSError`` and does not pass the error on
        err = sys.exc_info()[1]
        reason = f"{type(err).__name__}: {err}" if err is not None else "no reason given"
        self._report_connect_failure(f"cannot connect: {reason}")

    def _report_connect_failure(self, reason: str) -> None:
        """The first failure of an outage at error level, with the address; its retries at debug."""
        self.connect_failures += 1
        cfg = self.cfg
        if self.connect_failures > 1:
            log.debug("mqtt broker %s:%s: %s (retry %d)", cfg.host, cfg.port, reason,
                      self.connect_failures - 1)  # fmt: skip
            return
        log.error(
            "mqtt broker %s:%s: %s; the outbox keeps everything, retrying every %g to %g s "
            "(further failures of this outage at debug level)",
            cfg.host,
            cfg.port,
            reason,
            cfg.reconnect_min_s,
            cfg.reconnect_max_s,
        )

    @_guarded
    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            log.warning("mqtt disconnected (%s); the outbox keeps everything", reason_code)
        self.connected.clear()

    def _on_message(self, client, userdata, message) -> None:
        """An ack: whatever it holds, and whatever the decoder does with it, it never raises."""
        try:
            ack = decode(message.payload, Ack)
            if ack.device_id != self.device_id:
                raise ValueError(f"it is for device {ack.device_id!r}")
            self._apply(ack)
        except Exception as err:  # not only WireFormatError: a decoder bug must not kill paho
            self.acks_rejected += 1
            log.warning(
                "rejected an ack on %s (%d bytes, %d rejected so far): %s: %s",
                message.topic,
                len(message.payload),
                self.acks_rejected,
                type(err).__name__,
                err,
            )

    def _apply(self, ack: Ack) -> None:
        done = self.store.mark_delivered(list(ack.ids), list(ack.clip_ids))
        self.acks_received += 1
        with self._lock:
            acked = set(ack.ids)
            for seq, flight in list(self._inflight.items()):
                flight.unacked -= acked
                if not flight.unacked:
                    del self._inflight[seq]
            for clip_id in ack.clip_ids:
                self._clips_inflight.pop(clip_id, None)
        log.debug(
            "ack seq=%s ids=%d clips=%d newly_delivered=%d",
            ack.seq,
            len(ack.ids),
            len(ack.clip_ids),
            done,
        )
        self._wake.set()

    # ------------------------------------------------------------------------------ sender

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if not self.connected.is_set():
                continue
            try:
                self._send_due()
                if time.monotonic() - self._last_status >= self.cfg.status_interval_s:
                    self._publish_status()
            except StoreError as err:  # e.g. a full disk: the rows stay queued, retry later
                log.error("mqtt sync paused: %s", err.describe())
                self._stopping.wait(5.0)
            except Exception:  # the sender must outlive any single bad row
                log.exception("mqtt sync step failed; retrying")
                self._stopping.wait(1.0)

    def _release_expired(self) -> None:
        """Rows whose ack did not come within ``ack_timeout_s`` (monotonic) are due again."""
        limit = time.monotonic() - self.cfg.ack_timeout_s
        expired: list[OutboxItem] = []
        with self._lock:
            for flights in (self._inflight, self._clips_inflight):
                for key, flight in list(flights.items()):
                    if flight.sent < limit:
                        expired += flights.pop(key).items
        if expired:
            log.info(
                "no ack within %g s for %d row(s); sending again",
                self.cfg.ack_timeout_s,
                len(expired),
            )
            self.store.release(expired)

    def _send_due(self) -> None:
        self._release_expired()
        while self.connected.is_set() and len(self._inflight) < self.cfg.max_inflight_batches:
            items = self.store.due("detection", self.cfg.batch_size)
            if not items:
                break
            self._send_batch(items)
        for item in self.store.due("clip", 4):
            if not self.connected.is_set():
                break
            self._send_clip(item)

    def _send_batch(self, items: list[OutboxItem]) -> None:
        detections = self.store.detections([i.ref for i in items])
        seq = self.store.next_seq()
        payload = encode(
            DetectionBatch(
                device_id=self.device_id, site_id=self.site_id, seq=seq, detections=detections
            )
        )
        if len(payload) > MAX_PAYLOAD_BYTES and len(items) > 1:
            half = len(items) // 2
            self._send_batch(items[:half])
            self._send_batch(items[half:])
            return
        # in flight BEFORE the publish: an ack may arrive before publish() even returns
        self._track(self._inflight, seq, items, {d.id for d in detections}, seq)
        info = self.client.publish(detections_topic(self.site_id, self.device_id), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish of batch %d failed (%s); will retry", seq, info.rc)
            self._untrack(self._inflight, seq)
            return
        self.batches_sent += 1
        log.debug("sent batch seq=%d detections=%d", seq, len(detections))

    def _track(
        self, flights: dict, key: object, items: list[OutboxItem], ids: set[str], seq: int | None
    ) -> None:
        self.store.mark_sent(items, seq)
        with self._lock:
            flights[key] = _Inflight(items, ids, time.monotonic())

    def _untrack(self, flights: dict, key: object) -> None:
        with self._lock:
            flight = flights.pop(key, None)
        if flight is not None:
            self.store.release(flight.items)

    def _send_clip(self, item: OutboxItem) -> None:
        clip = self.store.clip(item.ref)
        path = Path(clip["path"]) if clip else None
        if path is None or not path.is_file():
            log.warning("clip %s is gone from disk; it will not be sent", item.ref)
            self.store.drop_from_outbox("clip", item.ref)
            return
        data = path.read_bytes()
        if len(data) > MAX_CLIP_BYTES:
            log.warning(
                "clip %s is %d bytes, over the %d limit; not sent",
                item.ref,
                len(data),
                MAX_CLIP_BYTES,
            )
            self.store.drop_from_outbox("clip", item.ref)
            return
        self._track(self._clips_inflight, item.ref, [item], {item.ref}, None)
        info = self.client.publish(clip_topic(self.site_id, self.device_id, item.ref), data, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._untrack(self._clips_inflight, item.ref)

    def _publish_status(self) -> None:
        self._last_status = time.monotonic()
        self.client.publish(self._status_topic, encode(self.status(True)), qos=1, retain=True)

    def _publish_ha_discovery(self) -> None:
        """Home Assistant MQTT discovery: a few sensors read from the retained status."""
        node = f"biovita_{self.site_id}_{self.device_id}".replace("-", "_").replace(".", "_")
        device = {
            "identifiers": [node],
            "name": f"biovita-field {self.site_id}/{self.device_id}",
            "manufacturer": "biovita-field",
        }
        sensors = {
            "queue_depth": {"name": "Outbox queue", "unit_of_measurement": "detections"},
            "last_detection_utc": {"name": "Last detection", "device_class": "timestamp"},
            "disk_free_bytes": {
                "name": "Disk free",
                "unit_of_measurement": "B",
                "device_class": "data_size",
            },
            "uptime_s": {"name": "Uptime", "unit_of_measurement": "s", "device_class": "duration"},
        }
        for key, extra in sensors.items():
            config = {
                **extra,
                "unique_id": f"{node}_{key}",
                "state_topic": self._status_topic,
                "value_template": f"{{{{ value_json.{key} }}}}",
                "availability_topic": self._status_topic,
                "availability_template": "{{ 'online' if value_json.online else 'offline' }}",
                "device": device,
            }
            topic = f"{self.cfg.ha_prefix}/sensor/{node}/{key}/config"
            self.client.publish(topic, json.dumps(config), qos=1, retain=True)
