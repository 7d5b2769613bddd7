"""``biovita-server ingest``: MQTT in, validated rows committed, acks out.

The loop collects messages for ``flush_ms`` (or ``max_messages``), commits them in one
transaction, and only then publishes the application acks and releases the MQTT PUBACKs (manual
acks). So an ack always means "durably stored", a crash before the commit makes the broker
redeliver, and a store outage stops the flow (the broker holds the backlog: at most
``receive_maximum`` messages wait unacknowledged here) instead of dropping anything.

Several workers can share the load: they subscribe with ``$share/<group>/...``, and because
detections are upserted by id, a message delivered twice, to one worker or two, is stored once.
Give each worker a stable client id: the broker keeps a worker's session (and queues its share of
the group's messages) for ``session_expiry_s`` after it leaves, so a restarted worker picks up
where it stopped, and a retired one stops receiving once its session expires.

Nothing a device sends can stop a worker: ``_on_message`` turns every failure into a dead letter.
Should paho's network thread die anyway (a bug in a callback), ``run`` notices within a poll and
raises ``NetworkThreadDied``: the process exits non-zero and systemd (``Restart=always``) starts a
fresh one, instead of a worker that looks up but stores and acks nothing. On a stop, the acks of
the last commit are sent before the connection closes (paho keeps at most ``max_inflight`` QoS 1
messages in flight and would drop the rest at the disconnect).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from biovita.detection import (
    CLIPS_FILTER,
    DETECTIONS_FILTER,
    STATUS_FILTER,
    Ack,
    acks_topic,
    encode,
    utc_now,
)
from biovita.errors import BiovitaError
from server_sync.clips import ClipStore
from server_sync.config import IngestSettings, MqttSettings
from server_sync.intake import (
    ClipIn,
    DetectionsIn,
    Ignored,
    Intake,
    StatusIn,
    classify,
    dead_letter,
)
from server_sync.mqtt import RECONNECT_MAX_S, RECONNECT_MIN_S, connect_properties, make_client
from server_sync.rate import DeviceRateLimiter
from server_sync.records import Clip, DeadLetter, IngestUnit, device_key
from server_sync.store import Store

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.5, 1, 2, 5, 10, 30)
# an outage's first failed connect is logged at error level, then every this many (at the
# longest back-off, about every 10 min), so a wrong address never leaves the log silent
CONNECT_FAILURE_REMINDER = 20


class NetworkThreadDied(BiovitaError):
    """paho's network thread ended while the worker was running: it can no longer receive."""


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    session: int  # which connection delivered it: a PUBACK is only valid on that one
    received: datetime
    intake: Intake


@dataclass
class Counters:
    messages: int = 0
    detections: int = 0
    clips: int = 0
    statuses: int = 0
    dead_letters: int = 0
    acks: int = 0
    flushes: int = 0
    store_failures: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    ack: Ack


class IngestWorker:
    def __init__(
        self,
        store: Store,
        clips: ClipStore,
        mqtt_settings: MqttSettings,
        ingest_settings: IngestSettings | None = None,
    ) -> None:
        self.store = store
        self.clips = clips
        self.mqtt_settings = mqtt_settings
        self.settings = ingest_settings or IngestSettings()
        self.counters = Counters()
        self.connected = threading.Event()
        self._inbox: queue.Queue[Incoming] = queue.Queue()
        self._session = 0
        self._connect_failures = 0  # in the current outage (since the last connection)
        self._network: threading.Thread | None = None
        self._unsent: list[mqtt.MQTTMessageInfo] = []  # the last commit's acks, until sent
        self._rate = DeviceRateLimiter(self.clips.limits.messages_per_device_minute)
        self._client = make_client(mqtt_settings, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # ----------------------------------------------------------------------- lifecycle

    def start(self) -> IngestWorker:
        s = self.mqtt_settings
        self._client.connect_async(
            s.host,
            s.port,
            keepalive=s.keepalive_s,
            clean_start=False,
            properties=connect_properties(s),
        )
        self._client.loop_start()
        # paho keeps its thread in a private attribute and clears it when the thread ends; keep
        # our own reference so ``run`` can tell a dead network thread from a quiet one.
        self._network = self._client._thread
        return self

    @property
    def network_alive(self) -> bool:
        return self._network is not None and self._network.is_alive()

    def run(self, stop: threading.Event) -> None:
        """Flush until ``stop`` is set, then disconnect.

        Messages received but not committed by then are not acked, so the broker redelivers them
        to this session (or another worker of the group) later: nothing is lost on a stop.
        """
        pending: list[Incoming] = []
        failures = 0
        last_report = time.monotonic()
        while not stop.is_set() or pending:
            if not self.network_alive:
                self._client.loop_stop()
                raise NetworkThreadDied(
                    f"the MQTT network thread died ({len(pending)} messages uncommitted, to be "
                    "redelivered by the broker)",
                    hint="see the log for the error; the service manager restarts the worker",
                )
            if not pending:
                pending = self._collect(stop)
            if not pending:
                continue
            try:
                self.flush(pending)
                pending, failures = [], 0
            except Exception as err:
                # The store or the disk failed, not the messages (those cannot raise: bad ones
                # become dead letters). Keep them, ack nothing, retry with backoff.
                self.counters.store_failures += 1
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                log.error(
                    "commit failed (%s); retrying %d messages in %s s", err, len(pending), delay
                )
                if stop.wait(delay):
                    break  # unacked messages are redelivered by the broker after a restart
            if time.monotonic() - last_report > 60:
                log.info("ingest: %s", self.summary())
                last_report = time.monotonic()
        self._send_acks(self.settings.stop_timeout_s)
        self._client.disconnect()
        self._client.loop_stop()

    def _send_acks(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) until the last commit's acks are on the wire."""
        deadline = time.monotonic() + timeout_s
        for info in self._unsent:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.connected.is_set():
                break
            try:
                info.wait_for_publish(remaining)
            except RuntimeError:  # the connection dropped: the device re-sends, we re-ack
                break
        unsent = sum(not info.is_published() for info in self._unsent)
        if unsent:
            log.warning("stopping with %d acks unsent; their devices will re-send", unsent)

    def summary(self) -> str:
        c = self.counters
        return (
            f"{c.messages} messages, {c.detections} detections, {c.clips} clips, "
            f"{c.statuses} statuses, {c.dead_letters} dead letters, {c.acks} acks, "
            f"{c.flushes} commits, {c.store_failures} store failures"
        )

    # ----------------------------------------------------------------------- MQTT callbacks

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self._session += 1
        self._connect_failures = 0
        group = self.mqtt_settings.share_group
        client.subscribe(
            [
                (f"$share/{group}/{topic}", SubscribeOptions(qos=1))
                for topic in (DETECTIONS_FILTER, CLIPS_FILTER, STATUS_FILTER)
            ]
        )

    def _on_connect_fail(self, client, userdata) -> None:
        """No TCP/TLS connection at all (wrong address, broker down, bad certificate). paho calls
        this inside its ``except OSError`` without passing the error on, and retries on its own."""
        err = sys.exc_info()[1]
        reason = f"{type(err).__name__}: {err}" if err is not None else "no reason given"
        self._connect_failures += 1
        s = self.mqtt_settings
        if self._connect_failures == 1 or self._connect_failures % CONNECT_FAILURE_REMINDER == 0:
            log.error(
                "cannot connect to the broker at %s:%s (%s); attempt %d, retrying every %g to %g s",
                s.host,
                s.port,
                reason,
                self._connect_failures,
                RECONNECT_MIN_S,
                RECONNECT_MAX_S,
            )
        else:
            log.debug("broker %s:%s: %s (attempt %d)", s.host, s.port, reason,
                      self._connect_failures)  # fmt: skip

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """Ready only once the broker confirms the subscriptions: before that, it drops
        messages for us (on a first start there is no session yet to queue them in)."""
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("broker refused the subscriptions (%s); check the ACL", ", ".join(refused))
            return
        log.info(
            "connected to %s:%s and subscribed", self.mqtt_settings.host, self.mqtt_settings.port
        )
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if reason_code.is_failure:
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # Validation runs here, on the network thread, so it overlaps the previous commit's
        # fsync (which releases the GIL) instead of queueing behind it. classify never raises;
        # the guard is for what surrounds it (a topic that is not UTF-8 raises in paho's getter).
        received = utc_now()
        payload = bytes(msg.payload)
        try:
            topic = msg.topic
            if self._rate.allow(device_key(topic)):
                intake = classify(topic, payload, received, self.clips.limits)
            else:
                intake = dead_letter(
                    topic,
                    payload,
                    received,
                    "rate_limited",
                    f"{device_key(topic)} sent more than {self._rate.capacity:.0f} messages "
                    "a minute; this one was not stored nor acked (the device re-sends it)",
                )
        except Exception as err:  # noqa: BLE001 (an exception here would kill the thread)
            topic = msg._topic.decode("utf-8", "replace")
            intake = dead_letter(
                topic, payload, received, "unexpected", f"{type(err).__name__}: {err}"
            )
        incoming = Incoming(topic, payload, msg.mid, msg.qos, self._session, received, intake)
        self._inbox.put(incoming)

    # ----------------------------------------------------------------------- the flush

    def _collect(self, stop: threading.Event) -> list[Incoming]:
        """Wait for a first message, then gather more for ``flush_ms`` or ``max_messages``."""
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.flush_ms / 1000
        while len(batch) < self.settings.max_messages:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        # whatever is already queued joins too (no waiting): a backlog drains in full commits
        while len(batch) < self.settings.max_messages:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def flush(self, messages: list[Incoming]) -> list[Ack]:
        """Commit ``messages``, then ack them (application acks, then PUBACKs)."""
        unit, outgoing = self._prepare(messages)
        self.store.ingest(unit, self.clips.limits)
        self._unsent = [self._client.publish(out.topic, encode(out.ack), qos=1) for out in outgoing]
        for m in messages:
            if m.qos > 0 and m.session == self._session:
                self._client.ack(m.mid, m.qos)
        c = self.counters
        c.flushes += 1
        c.messages += len(messages)
        c.detections += len(unit.detections)
        c.clips += len(unit.clips)
        c.statuses += len(unit.statuses)
        c.dead_letters += len(unit.dead_letters)
        c.acks += len(outgoing)
        for letter in unit.dead_letters:
            c.by_reason[letter.reason] += 1
        return [out.ack for out in outgoing]

    def _prepare(self, messages: list[Incoming]) -> tuple[IngestUnit, list[_Outgoing]]:
        intakes = [(m, m.intake) for m in messages]
        clip_ids = [i.clip_id for _, i in intakes if isinstance(i, ClipIn)]
        known = self.store.clips_by_id(clip_ids)
        first = {  # the content each detection id was first stored with
            key: row.detection
            for key, row in self.store.detections_by_id(
                [
                    d.id
                    for _, i in intakes
                    if isinstance(i, DetectionsIn)
                    for d in i.batch.detections
                ]
            ).items()
        }
        unit = IngestUnit()
        quota = _ClipQuota(self.store, self.clips.limits.clip_bytes_per_device_day)
        outgoing: list[_Outgoing] = []
        clip_acks: dict[tuple[str, str], list[str]] = defaultdict(list)
        for m, intake in intakes:
            if isinstance(intake, DetectionsIn):
                batch, where = intake.batch, intake.topic
                for d in batch.detections:
                    if first.setdefault(d.id, d) == d:
                        unit.detections.append(d)  # new, or a re-send stored once by its id
                    else:
                        unit.dead_letters.append(
                            _conflict(m, d.model_dump_json().encode(), f"detection {d.id}")
                        )
                unit.seen.append((where.site_id, where.device_id, m.received))
                ack = Ack(
                    device_id=batch.device_id,
                    seq=batch.seq,
                    ids=[d.id for d in batch.detections],
                )
                outgoing.append(_Outgoing(acks_topic(where.site_id, where.device_id), ack))
            elif isinstance(intake, ClipIn):
                where = intake.topic
                if intake.clip_id not in known:
                    over = quota.over(m.topic, len(intake.payload), m.received)
                    if over:
                        unit.dead_letters.append(
                            dead_letter(m.topic, intake.payload, m.received, "clip_quota", over)
                        )
                        continue  # not acked: the device keeps it and re-sends it later
                    known[intake.clip_id] = self._write_clip(intake, m.received)
                    unit.clips.append(known[intake.clip_id])
                elif not _same_clip(known[intake.clip_id], intake):
                    stored = known[intake.clip_id]
                    what = f"clip {intake.clip_id} (first sent by {stored.device_id})"
                    unit.dead_letters.append(_conflict(m, intake.payload, what))
                unit.seen.append((where.site_id, where.device_id, m.received))
                clip_acks[(where.site_id, where.device_id)].append(intake.clip_id)
            elif isinstance(intake, StatusIn):
                unit.statuses.append((intake.status, m.received))
            elif isinstance(intake, DeadLetter):
                log.warning("dead letter (%s) on %s: %s", intake.reason, m.topic, intake.error)
                unit.dead_letters.append(intake)
            elif isinstance(intake, Ignored):
                log.debug("ignored %s: %s", m.topic, intake.why)
        for (site_id, device_id), ids in clip_acks.items():
            ack = Ack(device_id=device_id, clip_ids=list(dict.fromkeys(ids)))
            outgoing.append(_Outgoing(acks_topic(site_id, device_id), ack))
        return unit, outgoing

    def _write_clip(self, intake: ClipIn, received: datetime) -> Clip:
        where = intake.topic
        relative = self.clips.relative_path(intake.clip_id, where.device_id, received)
        sha256 = self.clips.write(relative, intake.payload)
        return Clip(
            clip_id=intake.clip_id,
            device_id=where.device_id,
            site_id=where.site_id,
            path=relative,
            size_bytes=len(intake.payload),
            sha256=sha256,
            received_utc=received,
        )


def _conflict(m: Incoming, payload: bytes, what: str) -> DeadLetter:
    """An id already stored with other content (or from another device): the first row or file
    stays, this one is kept as a dead letter (and acked: it is durably recorded, and a re-send
    would conflict again)."""
    return dead_letter(
        m.topic,
        payload,
        m.received,
        "conflict",
        f"{what} is already stored with different content; the first one stays\n"
        "  hint: ids are made once per event on the device; a device that reuses them (a "
        "restored image, a copied data folder) needs a fresh database",
    )


def _same_clip(stored: Clip, intake: ClipIn) -> bool:
    """A re-send (same device, same bytes), not another clip under a used id."""
    return (
        stored.device_id == intake.topic.device_id
        and stored.sha256 == hashlib.sha256(intake.payload).hexdigest()
    )


class _ClipQuota:
    """Clip bytes per device per UTC day, over what is stored and what this flush adds."""

    def __init__(self, store: Store, per_day: int) -> None:
        self.store, self.per_day = store, per_day
        self._used: dict[tuple[str, date], int] = {}

    def over(self, topic: str, size: int, received: datetime) -> str:
        """Count ``size`` bytes if they fit; else say why not (and count nothing)."""
        key = (device_key(topic), received.date())
        if key not in self._used:
            midnight = datetime.combine(key[1], datetime.min.time(), tzinfo=timezone.utc)
            self._used[key] = self.store.clip_bytes_since(key[0], midnight)
        used = self._used[key]
        if used + size > self.per_day:
            return (
                f"{key[0]} has stored {used} clip bytes today (UTC); this clip of {size} bytes "
                f"would pass the {self.per_day}-byte daily limit ([limits] "
                "clip_bytes_per_device_day); not stored nor acked, the device re-sends it"
            )
        self._used[key] = used + size
        return ""
