from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile

from biovita.detection import Detection
from device.clips import AudioHistory, ClipRecorder
from device.records import AudioBlock, Event
from device.store import SCHEMA_VERSION, ClipRecord, Store

T0 = datetime(2026, 5, 1, 5, 0, tzinfo=timezone.utc)


def _detection(i: int) -> Detection:
    start = T0 + timedelta(seconds=10 * i)
    return Detection(
        device_id="rec-1", site_id="marsh", start_utc=start, end_utc=start + timedelta(seconds=3),
        start_sample=i * 160_000, end_sample=i * 160_000 + 48_000, sample_rate_hz=16_000,
        species_id="sp01", score=0.9, similarity=0.8,
    )  # fmt: skip


def test_pragmas_and_schema(tmp_path):
    store = Store(tmp_path / "log.db", busy_timeout_ms=1234)
    q = store.conn.execute
    assert q("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert q("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert q("PRAGMA busy_timeout").fetchone()[0] == 1234
    assert store.schema_version == SCHEMA_VERSION
    store.close()
    assert Store(tmp_path / "log.db").schema_version == SCHEMA_VERSION  # idempotent re-open


def test_outbox_order_resend_and_delivery_only_by_ack(tmp_path):
    store = Store(tmp_path / "log.db")
    dets = [_detection(i) for i in range(5)]
    store.add(dets)
    store.add(dets[:2])  # a repeated commit is an upsert, not a second row
    due = store.due("detection", 3)
    assert [i.ref for i in due] == [d.id for d in dets[:3]]
    store.mark_sent(due, seq=store.next_seq())
    assert [i.ref for i in store.due("detection", 10)] == [d.id for d in dets[3:]]  # in flight
    # not acked within the timeout: the sender releases them, due again in the original order
    store.release(due)
    assert [i.ref for i in store.due("detection", 10)][:3] == [d.id for d in dets[:3]]
    assert store.mark_delivered([dets[0].id, dets[1].id, "not-ours"]) == 2
    assert store.mark_delivered([dets[0].id]) == 0  # a repeated ack changes nothing
    assert store.counts() == {
        "detections": 5, "delivered": 2, "outbox_detections": 3, "outbox_clips": 0,
        "clips_on_disk": 0,
    }  # fmt: skip
    assert store.next_seq() == 1
    store.close()
    assert Store(tmp_path / "log.db").next_seq() == 2  # seq survives restarts


def test_history_ring_returns_the_exact_samples_by_stream_counter():
    history = AudioHistory(capacity=1000)
    ramp = np.arange(3000, dtype=np.float32)
    for start in range(0, 3000, 300):
        history.push(AudioBlock(ramp[start : start + 300], 100, start, T0))
    assert np.array_equal(history.extract(2100, 2900), ramp[2100:2900])
    assert np.array_equal(history.extract(1500, 2500), ramp[2000:2500])  # older audio is gone


def _event(start: int, end: int) -> Event:
    return Event("sp01", start, end, 16_000, T0, "x", 0.9, 0.8, 1)


def _recorder(tmp_path: Path, store: Store, quota: int) -> ClipRecorder:
    return ClipRecorder(
        tmp_path / "clips", 16_000, store, pre_roll_s=0.5, post_roll_s=0.5, max_clip_s=30.0,
        quota_bytes=quota, min_free_bytes=0, enabled=True,
    )  # fmt: skip


def test_clips_have_pre_and_post_roll_and_wait_for_the_post_roll(tmp_path):
    store = Store(tmp_path / "log.db")
    rec = _recorder(tmp_path, store, quota=10 << 20)
    noise = np.random.default_rng(0).normal(0, 0.1, 16_000 * 10).astype(np.float32)
    rec.push_audio(AudioBlock(noise[: 16_000 * 5], 16_000, 0, T0))
    rec.add([_event(16_000 * 2, 16_000 * 5)])
    assert rec.ready() == []  # post roll not recorded yet
    rec.push_audio(AudioBlock(noise[16_000 * 5 :], 16_000, 16_000 * 5, T0))
    ((event, clip),) = rec.ready()
    audio, rate = soundfile.read(clip.path, dtype="float32")
    assert rate == 16_000 and len(audio) == 16_000 * 4  # 0.5 + 3 + 0.5 s
    assert np.allclose(audio, noise[24_000:88_000], atol=1 / 32768)
    store.close()


def test_quota_deletes_synced_clips_first_and_pauses_when_only_unsynced_are_left(tmp_path, caplog):
    store = Store(tmp_path / "log.db")
    noise = np.random.default_rng(0).normal(0, 0.3, 16_000 * 40).astype(np.float32)
    rec = _recorder(tmp_path, store, quota=int(2.5 * 16_000 * 4 * 2))  # room for ~2.5 clips
    rec.push_audio(AudioBlock(noise, 16_000, 0, T0))

    def clip_for(i: int):
        rec.add([_event(16_000 * (4 * i + 1), 16_000 * (4 * i + 4))])
        ((_, clip),) = rec.ready()
        if clip is not None:
            det = _detection(i)
            store.add([det.model_copy(update={"clip_id": clip.clip_id})],
                      [ClipRecord(clip.clip_id, det.id, clip.path, clip.bytes)])  # fmt: skip
        return clip

    first, second = clip_for(0), clip_for(1)
    assert first and second
    store.mark_delivered([], [first.clip_id])  # the server has the first clip
    third = clip_for(2)
    assert third is not None and not first.path.exists() and second.path.exists()
    with caplog.at_level("WARNING"):
        assert clip_for(3) is None  # only unsynced clips left: never delete evidence
    assert "clip recording paused" in caplog.text and rec.skipped == 1
    assert second.path.exists() and third.path.exists()
    store.close()


@pytest.mark.parametrize("bad", [b"", b"not a database at all" * 300])
def test_garbage_instead_of_a_database(tmp_path, bad):
    from device.store import StoreError

    db = tmp_path / "log.db"
    db.write_bytes(bad)
    if not bad:  # an empty file is a fresh database to SQLite: fine
        Store(db).close()
        return
    with pytest.raises(StoreError):
        Store(db)


def test_the_quota_holds_when_several_events_close_at_once(tmp_path):
    """Clips written in one go are counted before they are committed to the store."""
    store = Store(tmp_path / "log.db")
    noise = np.random.default_rng(1).normal(0, 0.3, 16_000 * 40).astype(np.float32)
    quota = int(2.5 * 16_000 * 4 * 2)
    rec = _recorder(tmp_path, store, quota=quota)
    rec.push_audio(AudioBlock(noise, 16_000, 0, T0))
    rec.add([_event(16_000 * (4 * i + 1), 16_000 * (4 * i + 4)) for i in range(5)])
    written = [clip for _, clip in rec.ready() if clip is not None]
    on_disk = sum(p.stat().st_size for p in (tmp_path / "clips").rglob("*.flac"))
    assert len(written) == 2 and on_disk <= quota and rec.skipped == 3
    store.close()
