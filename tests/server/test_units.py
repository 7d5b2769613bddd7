"""Pure pieces of the server: thresholds, auth, intake, settings, charts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import tomllib

from biovita.detection import clip_topic, detections_topic, encode, status_topic, utc_now
from biovita.errors import ConfigError
from server_sync.auth import Session, SessionSigner, hash_password, verify_password
from server_sync.charts import daily_counts_svg
from server_sync.config import LimitSettings, load_settings
from server_sync.intake import ClipIn, DetectionsIn, Ignored, classify
from server_sync.rate import DeviceRateLimiter
from server_sync.records import DeadLetter, ReviewedScore
from server_sync.thresholds import suggest_threshold, thresholds_toml
from server_sync.throttle import MAX_KEYS, LoginThrottle
from tests.server.factories import batch, detection
from tests.server.seed import flac_bytes, silent_flac


def _scores(pairs):
    return [ReviewedScore(s, c) for s, c in pairs]


def test_threshold_is_the_lowest_score_reaching_the_target_precision():
    # below 0.6 the false positives pile up; from 0.6 up, 9 of 10 are right
    pairs = [(0.95, True), (0.9, True), (0.85, False), (0.8, True), (0.75, True)]
    pairs += [(0.7, True), (0.68, True), (0.65, True), (0.62, True), (0.6, True)]
    pairs += [(0.55, False), (0.52, False), (0.5, True)]
    s = suggest_threshold("sp", _scores(pairs), target_precision=0.9)
    assert s.threshold == 0.6 and s.precision == pytest.approx(0.9) and s.kept == 9
    assert s.correct == 10 and s.reviewed == 13


def test_threshold_needs_enough_reviews_and_handles_hopeless_species():
    assert suggest_threshold("sp", _scores([(0.9, True)] * 3)).threshold is None
    hopeless = suggest_threshold("sp", _scores([(0.9, False), (0.8, True), (0.7, False)] * 2))
    assert hopeless.threshold == pytest.approx(0.9001) and hopeless.precision is None


def test_ties_are_not_split():
    s = suggest_threshold("sp", _scores([(0.8, True)] * 4 + [(0.7, True), (0.7, False)]), 0.9)
    assert s.threshold == 0.8


def test_thresholds_toml_quotes_keys():
    s = suggest_threshold('odd "id"', _scores([(0.9, True)] * 5))
    assert thresholds_toml([s]) == '[classify.species_thresholds]\n"odd \\"id\\"" = 0.9000\n'


@pytest.mark.parametrize(
    "species_id",
    ["\U0001f989 owl", "sp_\U00020000", "del\x7fchar", 'quote " and \\', "line\nbreak", "\ud800"],
)
def test_thresholds_toml_is_valid_toml_for_any_species_id(species_id):
    toml = thresholds_toml([suggest_threshold(species_id, _scores([(0.9, True)] * 5))])
    (key,) = tomllib.loads(toml)["classify"]["species_thresholds"]
    assert key == species_id.replace("\ud800", "\ufffd")


def test_passwords_and_sessions():
    stored = hash_password("a good password")
    assert verify_password("a good password", stored)
    assert not verify_password("a good passworD", stored)
    assert not verify_password("x", "garbage")
    with pytest.raises(ConfigError):
        hash_password("short")
    signer = SessionSigner(b"s" * 32)
    cookie = signer.dumps(Session.for_user("ann", "reviewer", 60))
    assert signer.loads(cookie).username == "ann"
    assert SessionSigner(b"t" * 32).loads(cookie) is None  # another server's key
    payload, sig = cookie.rsplit(".", 1)
    assert signer.loads(payload[:-2] + "AA." + sig) is None  # tampered
    expired = Session("ann", "reviewer", "tok", time.time() - 1)
    assert signer.loads(signer.dumps(expired)) is None


def test_intake_classifies_every_kind_of_message():
    now = utc_now()
    good = batch([detection(n=1)], seq=4)
    assert isinstance(
        classify(detections_topic("site-a", "dev-1"), encode(good), now), DetectionsIn
    )
    spoof = classify(detections_topic("site-a", "dev-9"), encode(good), now)
    assert isinstance(spoof, DeadLetter) and spoof.reason == "topic_mismatch"
    clip = classify(clip_topic("site-a", "dev-1", "c-1"), flac_bytes(), now)
    assert isinstance(clip, ClipIn) and clip.clip_id == "c-1"
    assert classify(clip_topic("site-a", "dev-1", "c-2"), b"fLaC\x00\x00", now).reason == "not_flac"
    assert classify("biovita/v1/site-a/dev-1/clips/bad+id", b"fLaC", now).reason == "bad_topic"
    assert classify("elsewhere/x", b"{}", now).reason == "bad_topic"
    assert classify("biovita/v1/site-a/dev-1/acks", b"{}", now).reason == "bad_topic"
    assert isinstance(classify(status_topic("site-a", "dev-1"), b"", now), Ignored)


def test_clips_are_bounded_by_what_they_decode_to_not_their_size():
    """89 KB of FLAC holds 30 minutes of silence: refused by its decoded length."""
    now, topic = utc_now(), clip_topic("site-a", "dev-1", "c-1")
    long = silent_flac(30 * 60)
    assert len(long) < 100_000
    letter = classify(topic, long, now)
    assert isinstance(letter, DeadLetter) and letter.reason == "clip_too_long"
    assert "1800.0 s is longer than the 120 s limit" in letter.error
    tight = LimitSettings(max_clip_seconds=1.5)
    assert classify(topic, flac_bytes(2.0), now, tight).reason == "clip_too_long"
    assert isinstance(classify(topic, flac_bytes(1.0), now, tight), ClipIn)
    fast = silent_flac(1.0, rate=192_000)
    assert classify(topic, fast, now).reason == "clip_bounds"
    assert isinstance(classify(topic, fast, now, LimitSettings(max_clip_rate_hz=192_000)), ClipIn)
    stereo = silent_flac(1.0, channels=3)
    assert classify(topic, stereo, now).reason == "clip_bounds"


def test_limits_are_config_keys(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text(
        "[limits]\nmax_clip_seconds = 45\nmax_clip_rate_hz = 48000\nmax_clip_channels = 1\n"
        "clip_bytes_per_device_day = 1000\ndead_letters_per_device_reason = 7\n"
        "messages_per_device_minute = 30\n"
    )
    limits = load_settings(config, environ={}).limits
    assert limits == LimitSettings(
        max_clip_seconds=45,
        max_clip_rate_hz=48000,
        max_clip_channels=1,
        clip_bytes_per_device_day=1000,
        dead_letters_per_device_reason=7,
        messages_per_device_minute=30,
    )
    config.write_text("[limits]\nmessages_per_device_minute = 0\n")
    with pytest.raises(ConfigError, match="messages_per_device_minute"):
        load_settings(config, environ={})


def test_the_rate_limiter_allows_a_minutes_burst_then_refills_per_device():
    now = [0.0]
    limiter = DeviceRateLimiter(per_minute=6, clock=lambda: now[0])
    assert [limiter.allow("s/a") for _ in range(7)] == [True] * 6 + [False]
    assert limiter.allow("s/b")  # another device has its own bucket
    now[0] = 20.0  # a token every 10 s
    assert [limiter.allow("s/a") for _ in range(3)] == [True, True, False]


def test_settings_precedence_file_env_flags(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('db = "sqlite:///from-file.db"\n[mqtt]\nport = 1884\nhost = "file"\n')
    env = {"BIOVITA_MQTT_HOST": "from-env", "BIOVITA_MQTT_PORT": "1885"}
    settings = load_settings(config, {"mqtt.port": 1886}, environ=env)
    assert (settings.db_url, settings.mqtt.host, settings.mqtt.port) == (
        "sqlite:///from-file.db",
        "from-env",
        1886,
    )
    assert load_settings(environ={}).db_url == "sqlite://server-data/server.db"
    with pytest.raises(ConfigError, match="mqtt.port"):
        load_settings(environ={"BIOVITA_MQTT_PORT": "not-a-port"})


def test_chart_escapes_labels_and_scales_bars():
    svg = daily_counts_svg([("2024-05-01", 2), ("2024-05-<b>", 4)])
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert 'height="146.0"' in svg  # the peak day fills the plot
    assert daily_counts_svg([]).startswith("<p")


def test_login_throttle_counts_attempts_per_address_and_user_name():
    now = [1000.0]
    throttle = LoginThrottle(
        max_failures=3, max_address_failures=10, window_s=60, clock=lambda: now[0]
    )
    for _ in range(3):
        assert throttle.attempt("10.0.0.1", "ann") == 0  # counted, then the password fails
        now[0] += 1
    assert throttle.attempt("10.0.0.1", " ANN ") == pytest.approx(57)  # first attempt + 60 s
    assert throttle.attempt("10.0.0.2", "ann") == 0  # no lock-out from another address
    assert throttle.attempt("10.0.0.1", "bob") == 0
    now[0] += 57
    assert throttle.attempt("10.0.0.1", "ann") == 0  # the oldest attempt left the window
    throttle.succeeded("10.0.0.1", "ann")  # ...and that one logged in: it was no guess
    assert throttle.attempt("10.0.0.1", "ann") == 0 and throttle.attempt("10.0.0.1", "ann") == 0


def test_login_throttle_limits_one_address_across_user_names():
    throttle = LoginThrottle(max_failures=3, max_address_failures=10, window_s=60)
    assert all(throttle.attempt("10.0.0.1", f"name{i}") == 0 for i in range(10))
    assert throttle.attempt("10.0.0.1", "ann") > 0  # a spray over names is stopped too
    assert throttle.attempt("10.0.0.9", "ann") == 0


def test_login_throttle_memory_is_bounded_and_a_flood_does_not_lift_a_lockout():
    throttle = LoginThrottle(max_failures=3, max_address_failures=10**6)
    for _ in range(3):
        throttle.attempt("10.0.0.1", "ann")
    assert throttle.attempt("10.0.0.1", "ann") > 0
    for i in range(MAX_KEYS + 50):  # made-up names to push ann's entry out
        throttle.attempt("10.0.0.1", f"user{i}" + "x" * 1000)
    assert len(throttle._pairs) <= MAX_KEYS + 1
    assert all(len(name) <= 64 for _, name in throttle._pairs)
    assert throttle.attempt("10.0.0.1", "ann") > 0  # still locked: locked pairs are kept


def test_concurrent_attempts_cannot_slip_past_the_limit():
    throttle = LoginThrottle(max_failures=5)
    with ThreadPoolExecutor(max_workers=16) as pool:
        allowed = list(pool.map(lambda _: throttle.attempt("10.0.0.1", "ann") == 0, range(64)))
    assert sum(allowed) == 5
