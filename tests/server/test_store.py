"""The store contract, run on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from biovita.detection import utc_now
from server_sync.config import LimitSettings
from server_sync.records import (
    Clip,
    DeadLetter,
    DetectionFilter,
    IngestUnit,
    ReviewError,
    ReviewFilter,
    Role,
    User,
    Verdict,
)
from server_sync.store import StoreError, open_store
from server_sync.store.migrations import LATEST_VERSION, MIGRATIONS, statements
from server_sync.store.postgres import PostgresStore
from server_sync.store.sqlite import SqliteStore
from tests.server.factories import T0, detection, status


def _fill(store, n=40, devices=("dev-1", "dev-2")):
    rows = [
        detection(device_id=devices[i % len(devices)], site_id=f"site-{i % 2}", n=i)
        for i in range(n)
    ]
    store.ingest(IngestUnit(detections=rows))
    return rows


def _all_pages(store, flt, limit=7):
    seen, cursor = [], None
    for _ in range(1000):
        page = store.list_detections(flt, after=cursor, limit=limit)
        seen += page.rows
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


def test_migrations_are_idempotent_and_versioned(store):
    assert store.schema_version() == LATEST_VERSION
    assert store.migrate() == LATEST_VERSION
    store.check_schema()


def test_a_newer_database_is_refused(store):
    with store.transaction(write=True) as s:
        s.run(
            "INSERT INTO schema_migrations (version, name, applied_utc) VALUES (?, ?, ?)",
            (LATEST_VERSION + 1, "from the future", "2099-01-01"),
        )
    with pytest.raises(StoreError, match="upgrade biovita-server|knows up to"):
        store.migrate()


def test_an_unmigrated_database_is_refused_without_migrate(tmp_path):
    with pytest.raises(StoreError, match="migrate"):
        open_store(f"sqlite://{tmp_path / 'empty.db'}", migrate=False)


def test_upsert_by_id_stores_each_detection_once_and_keeps_the_first(store):
    original = detection(n=1, species_id="sp_owl")
    store.ingest(IngestUnit(detections=[original]))
    changed = original.model_copy(update={"species_id": "sp_frog"})
    store.ingest(IngestUnit(detections=[changed, original]))
    page = store.list_detections(DetectionFilter())
    assert [r.id for r in page.rows] == [original.id]
    assert page.rows[0].detection == original


def test_round_trip_keeps_every_field(store):
    d = detection(n=3, clip_id="clip-3")
    store.ingest(IngestUnit(detections=[d]))
    stored = store.detection(d.id)
    assert stored.detection == d
    assert stored.latest_review is None
    assert store.detection("00000000-0000-4000-8000-000000000000") is None


def test_detections_by_id_returns_the_stored_rows_as_sent(store):
    rows = _fill(store, n=7)
    found = store.detections_by_id([rows[2].id, rows[5].id, rows[2].id, "no-such-id"])
    assert {k: v.detection for k, v in found.items()} == {r.id: r for r in (rows[2], rows[5])}


def test_keyset_pages_cover_every_row_once_newest_first(store):
    rows = _fill(store, n=40)
    seen = _all_pages(store, DetectionFilter())
    assert sorted(r.id for r in seen) == sorted(d.id for d in rows)
    starts = [r.detection.start_utc for r in seen]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        (DetectionFilter(species_id="sp_owl"), lambda d: d.species_id == "sp_owl"),
        (DetectionFilter(site_id="site-1"), lambda d: d.site_id == "site-1"),
        (DetectionFilter(device_id="dev-2"), lambda d: d.device_id == "dev-2"),
        (DetectionFilter(score_min=0.5, score_max=0.8), lambda d: 0.5 <= d.score <= 0.8),
        (
            DetectionFilter(start_from=T0 + timedelta(seconds=9), start_to=T0 + timedelta(30)),
            lambda d: T0 + timedelta(seconds=9) <= d.start_utc < T0 + timedelta(30),
        ),
        (
            DetectionFilter(species_id="sp_wren", device_id="dev-2", score_min=0.4),
            lambda d: d.species_id == "sp_wren" and d.device_id == "dev-2" and d.score >= 0.4,
        ),
    ],
)
def test_filters_select_exactly_the_matching_rows(store, flt, keep):
    rows = _fill(store, n=40)
    expected = {d.id for d in rows if keep(d)}
    assert expected, "the filter should match something"
    assert {r.id for r in _all_pages(store, flt, limit=3)} == expected
    assert set(store.matching_ids(flt, 1000)) == expected


def test_reviews_are_appended_and_the_detection_is_never_rewritten(store):
    rows = _fill(store, n=12)
    target = rows[5]
    store.add_reviews([target.id], "ann", Verdict.REJECT, note="wind")
    store.add_reviews([target.id], "bob", Verdict.RELABEL, species_id="sp_frog", note="a frog")
    history = store.reviews(target.id)
    assert [(r.reviewer, r.verdict, r.species_id) for r in history] == [
        ("ann", Verdict.REJECT, None),
        ("bob", Verdict.RELABEL, "sp_frog"),
    ]
    stored = store.detection(target.id)
    assert stored.detection == target  # the row itself is untouched
    assert stored.latest_review.verdict == Verdict.RELABEL
    assert stored.reviewed_species_id == "sp_frog"


def test_review_state_filters(store):
    rows = _fill(store, n=20)
    store.add_reviews([rows[0].id, rows[1].id], "ann", Verdict.CONFIRM)
    store.add_reviews([rows[2].id], "ann", Verdict.REJECT)
    store.add_reviews([rows[3].id], "ann", Verdict.RELABEL, species_id="sp_frog")
    ids = {f: {r.id for r in _all_pages(store, DetectionFilter(review=f), 2)} for f in ReviewFilter}
    assert ids[ReviewFilter.CONFIRMED] == {rows[0].id, rows[1].id}
    assert ids[ReviewFilter.REJECTED] == {rows[2].id}
    assert ids[ReviewFilter.RELABELLED] == {rows[3].id}
    assert ids[ReviewFilter.REVIEWED] == {d.id for d in rows[:4]}
    assert ids[ReviewFilter.UNREVIEWED] == {d.id for d in rows[4:]}
    assert ids[ReviewFilter.ANY] == {d.id for d in rows}
    confirmed_owls = DetectionFilter(review=ReviewFilter.CONFIRMED, species_id=rows[0].species_id)
    assert {r.id for r in _all_pages(store, confirmed_owls)} == {rows[0].id}


def test_a_bad_review_writes_nothing(store):
    rows = _fill(store, n=3)
    with pytest.raises(ReviewError, match="does not exist"):
        store.add_reviews([rows[0].id, "00000000-0000-4000-8000-000000000000"], "a", "confirm")
    with pytest.raises(ReviewError, match="species"):
        store.add_reviews([rows[0].id], "a", Verdict.RELABEL)
    assert store.reviews(rows[0].id) == []


def test_hostile_text_is_stored_verbatim(store):
    rows = _fill(store, n=2)
    note = "'); DROP TABLE detections; -- <script>alert(1)</script> ? %s"
    store.add_reviews([rows[0].id], "o'brien", Verdict.CONFIRM, note=note)
    assert store.reviews(rows[0].id)[0].note == note
    assert store.reviews(rows[0].id)[0].reviewer == "o'brien"
    assert len(store.list_detections(DetectionFilter()).rows) == 2


def test_species_summary_false_positives_and_reviewed_scores(store):
    rows = [detection(n=i, species_id="sp_owl", score=0.5 + i / 100) for i in range(10)]
    rows += [detection(n=100 + i, species_id="sp_wren") for i in range(3)]
    store.ingest(IngestUnit(detections=rows))
    store.add_reviews([d.id for d in rows[:6]], "ann", Verdict.CONFIRM)
    store.add_reviews([rows[6].id], "ann", Verdict.REJECT)
    store.add_reviews([rows[7].id], "ann", Verdict.RELABEL, species_id="sp_wren")
    owl = {s.species_id: s for s in store.species_summaries()}["sp_owl"]
    assert store.species_summaries("sp_owl") == [owl]
    assert store.species_summaries("sp_none") == []
    assert (owl.detections, owl.confirmed, owl.rejected, owl.relabelled) == (10, 6, 1, 1)
    assert owl.false_positive_ratio == pytest.approx(2 / 8)
    scores = sorted(store.reviewed_scores("sp_owl"), key=lambda s: s.score)
    assert [s.correct for s in scores] == [True] * 6 + [False, False]
    assert scores[0].score == pytest.approx(0.5)
    assert store.reviewed_scores("sp_wren") == []


def test_daily_counts(store):
    a = detection(n=0, species_id="sp_owl")
    b = detection(n=1, species_id="sp_owl").model_copy(
        update={"start_utc": T0 + timedelta(days=1, hours=3)}
    )
    store.ingest(IngestUnit(detections=[a, b, detection(n=2, species_id="sp_wren")]))
    assert store.daily_counts("sp_owl") == [("2024-05-01", 1), ("2024-05-02", 1)]
    assert store.daily_counts() == [("2024-05-01", 2), ("2024-05-02", 1)]


def test_device_status_keeps_the_newest_report(store):
    now = utc_now()
    new = status(online=True, queue_depth=5, sent_utc=now, bundle_id="b2")
    old = status(online=False, queue_depth=99, sent_utc=now - timedelta(minutes=5))
    store.ingest(IngestUnit(statuses=[(new, now)]))
    store.ingest(IngestUnit(statuses=[(old, now)]))  # arrives late: ignored
    store.ingest(IngestUnit(seen=[("site-a", "dev-1", now + timedelta(seconds=30))]))
    (device,) = store.devices()
    assert (device.online, device.queue_depth, device.bundle_id) == (True, 5, "b2")
    assert device.last_seen_utc == now + timedelta(seconds=30)


def test_a_status_from_the_future_is_capped_to_the_servers_clock_and_flagged(store):
    """A clock reading 2099 used to freeze the fleet entry: no later status could outrank it."""
    now = utc_now()
    future = status(online=True, queue_depth=1, sent_utc=T0.replace(year=2099))
    store.ingest(IngestUnit(statuses=[(future, now)]))
    (device,) = store.devices()
    assert device.status_sent_utc == now and device.clock_ahead_s > 70 * 365 * 86400
    later = status(online=False, queue_depth=2, sent_utc=now + timedelta(seconds=5))
    store.ingest(IngestUnit(statuses=[(later, now + timedelta(seconds=6))]))
    (device,) = store.devices()
    assert (device.online, device.queue_depth, device.clock_ahead_s) == (False, 2, 0.0)


def test_dead_letters_count_repeats_per_reason(store):
    letter = DeadLetter("biovita/v1/s/d/detections", "not_json", "bad", b"{nope", 5)
    store.ingest(IngestUnit(dead_letters=[letter, letter]))
    store.ingest(IngestUnit(dead_letters=[letter]))
    other = DeadLetter("biovita/v1/s/d/detections", "oversized", "big", b"x" * 100_000, 100_000)
    store.ingest(IngestUnit(dead_letters=[other]))
    assert store.dead_letter_counts() == {"not_json": 3, "oversized": 1}
    kept = {d.reason: d for d in store.dead_letters()}
    assert kept["not_json"].count == 3 and kept["not_json"].payload == b"{nope"
    assert kept["oversized"].payload_bytes == 100_000
    assert len(kept["oversized"].payload) < 100_000  # truncated, size kept


def test_dead_letters_kept_per_device_and_reason_are_bounded_and_counts_stay_exact(store):
    """[limits] dead_letters_per_device_reason: 3,000 junk messages were 171 MiB of rows."""
    limits = LimitSettings(dead_letters_per_device_reason=10)

    def junk(device: str, n: int, reason: str = "not_json") -> DeadLetter:
        payload = f"junk {n} ".encode() * 2000
        return DeadLetter(f"biovita/v1/site-a/{device}/detections", reason, "bad", payload, 9999)

    for start in (0, 15):  # two flushes
        store.ingest(
            IngestUnit(dead_letters=[junk("dev-1", n) for n in range(start, start + 15)]), limits
        )
    store.ingest(IngestUnit(dead_letters=[junk("dev-2", n) for n in range(5)]), limits)
    store.ingest(IngestUnit(dead_letters=[junk("dev-1", 0, "invalid")]), limits)
    assert store.dead_letter_counts() == {"invalid": 1, "not_json": 35}
    letters = store.dead_letters(1000)
    dev_1 = [d for d in letters if "/dev-1/" in d.topic and d.reason == "not_json"]
    assert len(dev_1) == 11 and sum(d.count for d in dev_1) == 30
    (overflow,) = [d for d in dev_1 if d.count > 1]
    assert overflow.count == 20 and overflow.payload == b"" and "only counted" in overflow.error
    assert len([d for d in letters if "/dev-2/" in d.topic]) == 5


def test_clip_bytes_since_counts_one_device(store):
    now = utc_now()
    clips = [
        Clip(
            f"c-{n}",
            device,
            "site-a",
            f"x/{n}.flac",
            100 * (n + 1),
            "sha",
            now + timedelta(seconds=n),
        )
        for n, device in enumerate(["dev-1", "dev-1", "dev-2"])
    ]
    store.ingest(IngestUnit(clips=clips))
    assert store.clip_bytes_since("site-a/dev-1", now) == 300
    assert store.clip_bytes_since("site-a/dev-1", now + timedelta(seconds=1)) == 200
    assert store.clip_bytes_since("site-b/dev-1", now) == 0


def test_clips_users_export_and_stats(store):
    now = utc_now()
    with_clip = detection(n=1, clip_id="clip-1", species_id="sp_owl")
    relabelled = detection(n=2, clip_id="clip-2", species_id="sp_owl")
    no_clip = detection(n=3, species_id="sp_owl")
    rejected = detection(n=4, clip_id="clip-4")
    clips = [
        Clip(c, "dev-1", "site-a", f"2024/05/01/dev-1/{c}.flac", 10, "ab", now)
        for c in ("clip-1", "clip-2", "clip-4")
    ]
    store.ingest(IngestUnit(detections=[with_clip, relabelled, no_clip, rejected], clips=clips))
    store.ingest(IngestUnit(clips=clips[:1]))  # a re-sent clip changes nothing
    assert set(store.clips_by_id(["clip-1", "clip-2", "nope"])) == {"clip-1", "clip-2"}
    store.add_reviews([with_clip.id, no_clip.id], "ann", Verdict.CONFIRM)
    store.add_reviews([relabelled.id], "bob", Verdict.RELABEL, species_id="sp_frog")
    store.add_reviews([rejected.id], "bob", Verdict.REJECT)
    export = {r.detection_id: r for r in store.export_rows()}
    assert set(export) == {with_clip.id, relabelled.id, no_clip.id}
    assert export[with_clip.id].clip_path == "2024/05/01/dev-1/clip-1.flac"
    assert export[relabelled.id].species_id == "sp_frog"
    assert export[no_clip.id].clip_path is None

    store.put_user(User("ann", "hash1", Role.REVIEWER, now))
    store.put_user(User("ann", "hash2", Role.ADMIN, now))
    assert store.user("ann").password_hash == "hash2" and store.user("ann").role == Role.ADMIN
    assert store.user("nobody") is None
    store.put_user(User("bob", "hash3", Role.REVIEWER, now))
    assert [(u.username, u.role) for u in store.users()] == [
        ("ann", Role.ADMIN),
        ("bob", Role.REVIEWER),
    ]
    assert store.delete_user("bob") is True and store.delete_user("bob") is False
    assert [u.username for u in store.users()] == ["ann"]
    assert {r.reviewer for r in store.export_rows()} == {"ann", "bob"}  # reviews outlive authors

    stats = store.stats()
    assert stats["detections"] == 4 and stats["clips"] == 3 and stats["reviews"] == 4
    assert stats["reviewed_detections"] == 4 and stats["schema_version"] == LATEST_VERSION
    assert stats["species"] == len(
        {d.species_id for d in [with_clip, relabelled, no_clip, rejected]}
    )


def _user(name="ann", role=Role.REVIEWER, password_hash="h1"):
    return User(name, password_hash, role, utc_now())


def test_sessions_end_with_a_reset_a_role_change_a_removal_and_never_pass_to_a_new_user(store):
    later = utc_now() + timedelta(hours=1)
    store.put_user(_user())
    store.start_session("s-1", store.user("ann"), later)
    assert store.session_user("s-1").username == "ann"
    store.put_user(_user(password_hash="h2"))  # a password reset
    assert store.session_user("s-1") is None and store.session_count("ann") == 0
    store.start_session("s-2", store.user("ann"), later)
    store.put_user(_user(role=Role.ADMIN, password_hash="h2"))  # a role change
    assert store.session_user("s-2") is None
    store.start_session("s-3", store.user("ann"), later)
    stale = store.user("ann")
    assert store.delete_user("ann") and store.session_user("s-3") is None
    store.put_user(_user())  # the same name, added again
    assert store.session_user("s-3") is None
    store.start_session("s-4", stale, later)  # a login that read the user before the reset
    assert store.session_user("s-4") is None
    store.start_session("s-5", store.user("ann"), later)
    store.start_session("s-6", store.user("ann"), utc_now() - timedelta(seconds=1))
    assert store.session_user("s-5").username == "ann" and store.session_user("s-6") is None
    store.end_session("s-5")  # a logout
    assert store.session_user("s-5") is None


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_version_1_database_migrates_and_keeps_its_users_and_devices(request, tmp_path, backend):
    if backend == "sqlite":
        store = SqliteStore(tmp_path / "v1.db")
    else:
        store = PostgresStore(request.getfixturevalue("postgres_url"))
    v1 = MIGRATIONS[0]
    with store.transaction(write=True) as s:  # a database as a version-1 server left it
        s.run(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_utc TEXT NOT NULL)"
        )
        for statement in statements(v1.ddl, store.dialect.types):
            s.run(statement)
        s.run("INSERT INTO schema_migrations VALUES (1, ?, ?)", (v1.name, "2026-01-01"))
        s.run(
            "INSERT INTO users (username, password_hash, role, created_utc) VALUES (?, ?, ?, ?)",
            ("ann", "h1", "admin", store.dialect.time_param(utc_now())),
        )
        s.run("INSERT INTO devices (device_id, site_id) VALUES ('dev-1', 'site-a')")
    try:
        assert store.migrate() == LATEST_VERSION
        assert store.user("ann").role == Role.ADMIN and store.devices()[0].clock_ahead_s is None
        store.start_session("s-1", store.user("ann"), utc_now() + timedelta(hours=1))
        assert store.session_user("s-1").username == "ann"
    finally:
        store.close()
