"""The device's TLS and username/password options against a real Mosquitto that requires both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from device.store import Store
from tests.device.ack_peer import AckPeer
from tests.device.helpers import DaemonThread, run_config
from tests.support.mosquitto import MosquittoBroker, free_port

pytestmark = pytest.mark.mqtt


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(folder: Path) -> Path:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
             cwd=folder)  # fmt: skip
    return folder


@pytest.fixture
def secure_broker(tmp_path):
    certs = make_certs(tmp_path / "certs")
    passwords = tmp_path / "passwd"
    for user, password in (("rec-7", "s3cret"), ("server", "srv-pass")):
        flag = ["-c"] if not passwords.exists() else []
        subprocess.run(
            ["mosquitto_passwd", "-b", *flag, str(passwords), user, password], check=True
        )
    passwords.chmod(0o644)
    port = free_port()
    broker = MosquittoBroker(
        tmp_path / "mosquitto",
        extra_config=(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            f"cafile {certs}/ca.crt\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n"
        ),
        port=port,
    ).start()
    yield broker, certs
    broker.stop()


def _secure(broker, certs: Path, password_file: Path) -> dict:
    return {
        "mqtt.enabled": True, "mqtt.host": "127.0.0.1", "mqtt.port": broker.port,
        "mqtt.tls": True, "mqtt.ca_file": str(certs / "ca.crt"),
        "mqtt.username": "rec-7", "mqtt.password_file": str(password_file),
    }  # fmt: skip


def test_tls_with_a_password_delivers(secure_broker, tone_bundle, scape_file, tmp_path):
    broker, certs = secure_broker
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    peer = AckPeer("127.0.0.1", broker.port, username="server", password="srv-pass",
                   ca_file=str(certs / "ca.crt"))  # fmt: skip
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path, **_secure(broker, certs, secret))
    DaemonThread(cfg).start().join()
    store = Store(cfg.store_path)
    try:
        assert store.counts()["delivered"] == 4 and store.queue_depth() == 0
    finally:
        store.close()
    assert len(peer.stored) == 4
    peer.close()


def test_a_wrong_password_keeps_everything_queued(
    secure_broker, tone_bundle, scape_file, tmp_path, caplog
):
    broker, certs = secure_broker
    wrong = tmp_path / "wrong.password"
    wrong.write_text("guess\n")
    path, _ = scape_file
    cfg = run_config(tmp_path, tone_bundle, path, **_secure(broker, certs, wrong))
    with caplog.at_level("ERROR"):
        runner = DaemonThread(cfg).start()
        runner.join()
    assert "refused the connection" in caplog.text
    # paho goes on retrying: the recorder keeps recording rather than failing into a restart loop
    assert runner.returncode == 0 and runner.daemon.failure is None
    store = Store(cfg.store_path)
    try:
        assert store.counts()["outbox_detections"] == 4 and store.counts()["delivered"] == 0
    finally:
        store.close()
