"""Bad-input suite: hostile or broken MQTT payloads, audio files, bundles and config files, each
answered with a clear error, nothing already stored lost, the daemon and ingest still running.

Every input goes through a real entry point: the running `biovita-server ingest` process via
the broker, the running `biovita-field listen` daemon via its acks topic, and the
`biovita-field` / `biovita-server` commands a person types.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from biovita.detection import (
    Ack,
    acks_topic,
    clip_topic,
    detections_topic,
    encode,
    status_topic,
)
from tests.e2e import ledger
from tests.e2e.chain import (
    BIN,
    DeviceDb,
    PcmFeeder,
    ServerDb,
    ingest_service,
    integrity,
    listen_service,
    wait_until,
)
from tests.e2e.peers import Peer

SITE, DEVICE = "site-x", "dev-x"
INJECTION = "x'); DROP TABLE detections; --<script>alert(1)</script>"


def valid_batch(n: int = 2, seq: int = 0, **detection_fields) -> dict:
    """A contract-valid batch as plain JSON, to break one piece at a time."""
    detections = [
        {
            "id": f"00000000-0000-4000-8000-{seq:06d}{i:06d}",
            "device_id": DEVICE,
            "site_id": SITE,
            "start_utc": "2026-05-01T04:00:00Z",
            "end_utc": "2026-05-01T04:00:03Z",
            "start_sample": 48_000 * i,
            "end_sample": 48_000 * i + 48_000,
            "sample_rate_hz": 16_000,
            "species_id": f"sp{i}",
            "score": 0.9,
            "similarity": 0.5,
            **detection_fields,
        }
        for i in range(n)
    ]
    return {
        "schema": "biovita.detections",
        "schema_version": 1,
        "device_id": DEVICE,
        "site_id": SITE,
        "seq": seq,
        "sent_utc": "2026-05-01T04:00:05Z",
        "detections": detections,
    }


def as_bytes(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def broken(**changes) -> bytes:
    doc = valid_batch()
    doc.update(changes)
    return as_bytes(doc)


def broken_detection(**changes) -> bytes:
    doc = valid_batch()
    doc["detections"][0].update(changes)
    return as_bytes(doc)


DETECTIONS = detections_topic(SITE, DEVICE)

# name -> (topic, payload, the dead-letter reason the server must record)
HOSTILE_MESSAGES = {
    "truncated": (DETECTIONS, as_bytes(valid_batch())[:57], "not_json"),
    "empty": (DETECTIONS, b"", "not_json"),
    "invalid-utf8": (DETECTIONS, b'{"schema": "\xff\xfe\xfa"}', "not_utf8"),
    "json-array": (DETECTIONS, b"[1, 2, 3]", "invalid"),
    "deeply-nested": (DETECTIONS, b"[" * 100_000, "not_json"),
    "oversized": (DETECTIONS, b'{"pad": "' + b"x" * (2 << 20) + b'"}', "oversized"),
    "wrong-schema": (DETECTIONS, broken(schema="biovita.acks"), "unknown_schema"),
    "future-schema-version": (DETECTIONS, broken(schema_version=99), "unknown_schema"),
    "wrong-type-score": (DETECTIONS, broken_detection(score="very high"), "invalid"),
    "score-out-of-range": (DETECTIONS, broken_detection(score=7.5), "invalid"),
    "nan-score": (DETECTIONS, broken_detection(score=float("nan")), "invalid"),
    "naive-timestamp": (DETECTIONS, broken_detection(start_utc="2026-05-01T04:00:00"), "invalid"),
    "not-a-uuid": (DETECTIONS, broken_detection(id="1; DROP TABLE detections"), "invalid"),
    "unknown-field": (DETECTIONS, broken(extra_field="surprise"), "invalid"),
    "too-many-detections": (DETECTIONS, as_bytes(valid_batch(n=1001, seq=9)), "invalid"),
    "spoofed-device": (
        DETECTIONS,
        as_bytes(valid_batch() | {"device_id": "dev-other"}),
        "topic_mismatch",
    ),
    "clip-not-flac": (clip_topic(SITE, DEVICE, "c1"), b"RIFF....WAVEfmt ", "not_flac"),
    "status-wrong-types": (
        status_topic(SITE, DEVICE),
        as_bytes(
            {
                "schema": "biovita.status",
                "schema_version": 1,
                "device_id": DEVICE,
                "site_id": SITE,
                "online": "maybe",
            }
        ),
        "invalid",
    ),  # fmt: skip
    "clip-id-path-traversal": (f"biovita/v1/{SITE}/{DEVICE}/clips/..passwd", b"fLaC", "bad_topic"),
}


@dataclass
class Running:
    server: ServerDb
    peer: Peer
    ingest: object


@pytest.fixture
def running_ingest(mosquitto, tmp_path):
    data = tmp_path / "server"
    ingest = ingest_service(data, mosquitto.host, mosquitto.port, tmp_path / "ingest.log").start()
    ingest.wait_for_log("connected to")
    with Peer(mosquitto.host, mosquitto.port, DEVICE) as peer:
        yield Running(ServerDb(data), peer, ingest)
    ingest.stop()


@pytest.mark.mqtt
@pytest.mark.e2e
def test_hostile_mqtt_payloads_are_dead_lettered_and_ingest_keeps_going(running_ingest):
    server, peer, ingest = running_ingest.server, running_ingest.peer, running_ingest.ingest
    peer.subscribe(acks_topic(SITE, DEVICE))
    peer.publish(DETECTIONS, as_bytes(valid_batch(seq=1)))  # stored before the attack
    wait_until(lambda: server.count() == 2, 20, "the first valid batch stored")
    stored_before = server.ids(DEVICE)

    for topic, payload, _ in HOSTILE_MESSAGES.values():
        peer.publish(topic, payload)
    # hostile text inside valid fields is data: stored verbatim, escaped where it is shown
    peer.publish(
        DETECTIONS,
        as_bytes(valid_batch(seq=2, species_id=INJECTION, common_name=INJECTION)),
    )
    peer.publish(DETECTIONS, as_bytes(valid_batch(seq=3) | {"detections": []}))
    wait_until(lambda: server.count() == 4, 30, "the batch after the attack stored")

    assert ingest.alive, ingest.log_text()[-3000:]
    letters = server.dead_letters()
    reasons = {topic_reason for topic_reason in letters}
    for name, (topic, _, reason) in HOSTILE_MESSAGES.items():
        assert (reason, topic) in reasons, f"{name}: no {reason} dead letter on {topic}"
        ledger.bad_input("MQTT payload")
    assert len(letters) == len(HOSTILE_MESSAGES)
    assert server.ids(DEVICE)[:2] == stored_before  # nothing stored earlier changed or vanished
    assert INJECTION in {row for row in server.species(DEVICE)}
    ledger.bad_input("MQTT payload")  # the injection strings
    assert "Traceback" not in ingest.log_text()


# ------------------------------------------------------------ hostile acks to a running daemon


@pytest.mark.mqtt
@pytest.mark.e2e
def test_hostile_acks_do_not_stop_the_daemon_or_drop_its_outbox(mosquitto, field_kit, tmp_path):
    """Without a server, nothing may leave the outbox: forged, broken or foreign acks are
    ignored, the daemon keeps listening, and every row is still there for the real server."""
    data = tmp_path / "device"
    daemon = listen_service(
        field_kit.bundle, data, DEVICE, SITE, mosquitto.host, mosquitto.port,
        ["--stdin-rate", str(field_kit.rate)], stdin=subprocess.PIPE,
    ).start()  # fmt: skip
    audio, _ = soundfile.read(field_kit.soundscapes[0], dtype="float32")
    feeder = PcmFeeder(audio[: 40 * field_kit.rate], field_kit.rate, speed=20.0).attach(daemon)
    db = DeviceDb(data / "device.db")
    try:
        wait_until(lambda: len(db.ids()) >= 2, 60, "detections committed")
        acks = acks_topic(SITE, DEVICE)
        foreign = Ack(device_id="dev-other", ids=db.ids())
        hostile = [
            b"\xff\xfe not even text",
            b"[" * 100_000,
            b'{"schema": "biovita.acks", "schema_version": 42, "device_id": "dev-x"}',
            b'{"schema": "biovita.acks", "schema_version": 1, "device_id": "dev-x", "ids": 7}',
            encode(foreign),  # an ack naming this device's rows, but for another device
            b"x" * (2 << 20),
        ]
        with Peer(mosquitto.host, mosquitto.port, "attacker") as attacker:
            for payload in hostile:
                attacker.publish(acks, payload)
                ledger.bad_input("MQTT ack to the device")
            # the daemon is still there and still committing
            seen = len(db.ids())
            assert feeder.played.wait(60)
            wait_until(lambda: len(db.ids()) > seen or not daemon.alive, 30, "still listening")
        assert daemon.alive, daemon.log_text()[-3000:]
        assert db.delivered_ids() == set()
        assert db.outbox_detections() == len(db.ids())
    finally:
        feeder.close()
        daemon.wait(30)
    assert "Traceback" not in daemon.log_text()
    assert integrity(db.path) == "ok"


# ------------------------------------------------------------ audio, bundles, config: the CLIs


def run_cli(*argv: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def assert_clear_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 2, the problem and the fix on stderr, no traceback."""
    text = result.stdout + result.stderr
    assert result.returncode == 2, f"exit {result.returncode}:\n{text[-3000:]}"
    assert "error:" in result.stderr and "Traceback" not in text, text[-3000:]
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in:\n{text[-3000:]}"


@pytest.fixture(scope="module")
def device_log(field_kit, tmp_path_factory) -> Path:
    """A device database that already holds detections: bad input must not touch them."""
    root = tmp_path_factory.mktemp("device-log")
    db = root / "device.db"
    done = run_cli(
        BIN / "biovita-field", "classify", field_kit.soundscapes[0], "--bundle", field_kit.bundle,
        "--db", db, "--out", root / "out", "--formats", "csv", "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert DeviceDb(db).ids()
    return db


@pytest.fixture
def unchanged(device_log):
    """The device log, checked afterwards: sound, and every row it held still there."""
    before = DeviceDb(device_log).ids()
    yield device_log
    assert integrity(device_log) == "ok"
    assert DeviceDb(device_log).ids()[: len(before)] == before


def write_wav(path: Path, audio: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> Path:
    soundfile.write(path, audio, rate, subtype=subtype)
    return path


def bad_audio_files(folder: Path, good: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    noise = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    files = {
        "empty": folder / "empty.wav",
        "truncated": folder / "truncated.wav",
        "random-bytes": folder / "random.wav",
        "text-as-flac": folder / "notes.flac",
        "nan-samples": folder / "nan.wav",
        "inf-samples": folder / "inf.wav",
        "rate-too-low": folder / "lowrate.wav",
        "header-only": folder / "header.wav",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 3][:44] + b"\x00" * 7)
    files["random-bytes"].write_bytes(np.random.default_rng(1).bytes(50_000))
    files["text-as-flac"].write_text("field notes: nothing to hear here\n")
    with_nan = noise.copy()
    with_nan[100:200] = np.nan
    write_wav(files["nan-samples"], with_nan, subtype="FLOAT")
    with_inf = noise.copy()
    with_inf[5] = np.inf
    write_wav(files["inf-samples"], with_inf, subtype="FLOAT")
    write_wav(files["rate-too-low"], noise[:4000], rate=2000)
    files["header-only"].write_bytes(data[:44])
    return files


@pytest.mark.e2e
def test_broken_audio_files_get_a_clear_error_each_and_good_ones_still_classify(
    field_kit, unchanged, tmp_path
):
    folder = tmp_path / "recordings"
    folder.mkdir()
    good = Path(shutil.copy(field_kit.soundscapes[1], folder / "good.wav"))
    files = bad_audio_files(folder, good)
    out = tmp_path / "out"
    result = run_cli(
        BIN / "biovita-field", "classify", folder, "--bundle", field_kit.bundle,
        "--db", unchanged, "--out", out, "--formats", "csv", "-q",
    )  # fmt: skip
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text[-3000:]
    assert result.returncode == 1, text[-3000:]  # the good file classified, the run failed
    assert f"{len(files)} file(s) failed:" in result.stderr
    for name, path in files.items():
        line = next((ln for ln in text.splitlines() if f"error: {path}: " in ln), None)
        assert line, f"{name}: no error line naming {path.name}:\n{text[-3000:]}"
        ledger.bad_input("audio file")
    assert "good.wav" in (out / "detections.csv").read_text()

    # the same files as the live daemon's stream: each refused, the daemon carries on to the end
    for name, path in files.items():
        single = run_cli(
            BIN / "biovita-field", "classify", path, "--bundle", field_kit.bundle,
            "--db", unchanged, "--out", out, "--formats", "csv", "-q",
        )  # fmt: skip
        assert "Traceback" not in single.stdout + single.stderr, name
        assert single.returncode != 0, f"{name}: accepted as audio"


def broken_bundles(good: Path, root: Path) -> dict[str, Path]:
    """Copies of a good bundle, each broken in one way a download, a disk or a person breaks it."""

    def copy(name: str) -> Path:
        target = root / name
        shutil.copytree(good, target)
        return target

    def edit_manifest(bundle: Path, change) -> None:
        path = bundle / "manifest.json"
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    out: dict[str, Path] = {"missing": root / "no-such-bundle"}
    b = out["no-manifest"] = copy("no-manifest")
    (b / "manifest.json").unlink()
    b = out["manifest-not-json"] = copy("manifest-not-json")
    (b / "manifest.json").write_text('{"schema_version": 1, "tower": ')
    b = out["manifest-invalid-utf8"] = copy("manifest-invalid-utf8")
    (b / "manifest.json").write_bytes(b'{"schema_version": "\xff\xfe"}')
    b = out["future-schema"] = copy("future-schema")
    edit_manifest(b, lambda d: d.update(schema_version=99))
    b = out["manifest-wrong-types"] = copy("manifest-wrong-types")
    edit_manifest(b, lambda d: d["tower"].update(embedding_dim="sixty-four"))
    b = out["tampered-tower"] = copy("tampered-tower")
    with open(b / "audio_tower.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    b = out["truncated-tower"] = copy("truncated-tower")
    data = (b / "audio_tower.onnx").read_bytes()
    (b / "audio_tower.onnx").write_bytes(data[: len(data) // 2])
    b = out["missing-bank"] = copy("missing-bank")
    (b / "species.npz").unlink()
    tar = root / "truncated.tar"
    with tarfile.open(root / "full.tar", "w") as t:
        t.add(good, arcname="bundle")
    tar.write_bytes((root / "full.tar").read_bytes()[:5000])
    out["truncated-tar"] = tar
    return out


@pytest.mark.e2e
@pytest.mark.parametrize(
    "name",
    [
        "missing", "no-manifest", "manifest-not-json", "manifest-invalid-utf8", "future-schema",
        "manifest-wrong-types", "tampered-tower", "truncated-tower", "missing-bank",
        "truncated-tar",
    ],
)  # fmt: skip
def test_broken_bundle_is_refused_with_a_clear_error(field_kit, unchanged, tmp_path, name):
    bundle = broken_bundles(field_kit.bundle, tmp_path)[name]
    for argv in (
        ["classify", field_kit.soundscapes[0], "--out", tmp_path / "out", "-q"],
        ["listen", "--file", field_kit.soundscapes[0], "--fast", "--no-mqtt"],
    ):
        result = run_cli(BIN / "biovita-field", *argv, "--bundle", bundle, "--db", unchanged)
        assert_clear_error(result, "bundle")
    ledger.bad_input("bundle")


DEVICE_CONFIGS = {
    "toml-syntax": (b"[mqtt\nhost = 'broker'\n", "TOML"),
    "unknown-key": (b"[mqtt]\nhots = 'broker'\n", "hots"),
    "wrong-type": (b"[mqtt]\nport = 'eighteen'\n", "port"),
    "out-of-range": (b"[classify]\nthreshold = 7.0\n", "threshold"),
    "invalid-utf8": (b"[device]\nid = '\xff\xfe'\n", "config"),
    "topic-injection-id": (b"[device]\nid = 'dev/+/#'\n", "device.id"),
    "newline-injection-site": (b'[device]\nsite = "a\\nb"\n', "device.site"),
    "huge-file": (b"# " + b"x" * (8 << 20) + b"\n[mqtt\n", "TOML"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(DEVICE_CONFIGS))
def test_broken_device_config_is_refused_with_a_clear_error(field_kit, unchanged, tmp_path, name):
    content, word = DEVICE_CONFIGS[name]
    config = tmp_path / "device.toml"
    config.write_bytes(content)
    result = run_cli(
        BIN / "biovita-field", "listen", "--config", config, "--bundle", field_kit.bundle,
        "--db", unchanged, "--file", field_kit.soundscapes[0], "--fast", "--no-mqtt",
    )  # fmt: skip
    assert_clear_error(result, word)
    ledger.bad_input("config file")


SERVER_CONFIGS = {
    "toml-syntax": ({"file": b"[mqtt\n"}, "TOML"),
    "wrong-type": ({"file": b"[mqtt]\nport = 'eighteen'\n"}, "port"),
    "out-of-range": ({"file": b"[mqtt]\nport = 70000\n"}, "port"),
    "unknown-key": ({"file": b"[web]\nprot = 1\n"}, "prot"),
    "bad-env": ({"env": {"BIOVITA_MQTT_PORT": "abc"}}, "port"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(SERVER_CONFIGS))
def test_broken_server_config_is_refused_and_the_store_untouched(tmp_path, name):
    spec, word = SERVER_CONFIGS[name]
    data = tmp_path / "server"
    assert run_cli(BIN / "biovita-server", "migrate", "--data", data).returncode == 0
    before = (data / "server.db").read_bytes()
    config = tmp_path / "server.toml"
    config.write_bytes(spec.get("file", b""))
    argv = ["--config", config] if "file" in spec else []
    for command in ("migrate", "ingest", "serve"):
        result = run_cli(
            BIN / "biovita-server", command, "--data", data, *argv, env=spec.get("env")
        )
        assert_clear_error(result, word)
    assert (data / "server.db").read_bytes() == before
    ledger.bad_input("config file")
