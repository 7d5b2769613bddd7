"""``biovita-field doctor``: is this recorder ready to listen? One line per check."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from biovita.errors import BiovitaError
from device.config import DeviceConfig


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _run(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except BiovitaError as err:
        return Check(name, False, err.describe())
    except Exception as err:  # doctor reports every failure, whatever raised it
        return Check(name, False, f"{type(err).__name__}: {err}")


def check_audio(cfg: DeviceConfig) -> str:
    from device.sources import describe_devices, input_devices, resolve_input_device

    devices = input_devices()
    if cfg.audio.source != "soundcard":
        return f"source is {cfg.audio.source}; input devices: {describe_devices(devices)}"
    chosen = resolve_input_device(cfg.audio.input_device, devices)
    return f"will use [{chosen['index']}] {chosen['name']} ({chosen['default_rate_hz']} Hz)"


def check_bundle(cfg: DeviceConfig) -> str:
    from device.app import build_backend, open_bundle
    from device.backends import local_tensorrt, select_engine

    bundle = open_bundle(cfg)
    backend = build_backend(bundle, cfg)
    window = np.zeros((1, bundle.manifest.tower.input_samples), np.float32)
    backend.embed(window)  # warm-up
    started = time.perf_counter()
    backend.embed(np.repeat(window, 8, axis=0))
    ms = (time.perf_counter() - started) / 8 * 1000
    engine = select_engine(bundle.manifest.engines, *local_tensorrt())
    return (
        f"{bundle.root}: id {bundle.manifest.bundle_id}, {len(bundle.bank)} species, hashes ok; "
        f"{backend.name} {ms:.2f} ms/window; TensorRT: {engine.reason}"
    )


def check_runtime(cfg: DeviceConfig) -> str:
    """TensorRT, the GPU, ONNX Runtime's providers, and which of them ``listen`` will use."""
    from device.app import open_bundle
    from device.backends import import_onnxruntime, local_tensorrt, plan_backend
    from device.cuda import compute_capability

    version, capability = local_tensorrt()
    try:
        gpu = f"CUDA GPU sm {compute_capability()}"
    except BiovitaError as err:
        gpu = str(err)
    tensorrt = f"TensorRT {version}" if version else "TensorRT not installed"
    try:
        ort = import_onnxruntime()
        onnx_runtime = (
            f"ONNX Runtime {ort.__version__} ({', '.join(ort.get_available_providers())})"
        )
    except BiovitaError as err:
        onnx_runtime = None
        missing = err
    plan = plan_backend(
        open_bundle(cfg).manifest.engines, cfg.inference.backend, version, capability
    )
    if plan.runtime == "onnxruntime" and onnx_runtime is None:
        raise BiovitaError(
            f"{tensorrt}; {gpu}; no runtime for listen: {missing} and no TensorRT engine "
            f"({plan.reason})",
            hint=missing.hint,
        )
    uses = f"tensorrt ({plan.engine.precision})" if plan.engine else "onnxruntime"
    return f"{tensorrt}; {gpu}; {onnx_runtime or 'ONNX Runtime not installed'}; listen uses {uses}: {plan.reason}"


def check_disk(cfg: DeviceConfig) -> str:
    from biovita.errors import ConfigError

    cfg.device.data_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cfg.device.data_dir).free
    need = (cfg.store.min_free_mb + cfg.clips.min_free_mb) * (1 << 20)
    if free < need:
        raise ConfigError(
            f"only {free >> 20} MiB free in {cfg.device.data_dir}",
            hint=f"free space: listen needs over {int(need) >> 20} MiB (store + clip floors)",
        )
    return f"{free >> 20} MiB free in {cfg.device.data_dir}"


def check_store(cfg: DeviceConfig) -> str:
    from device.store import Store

    store = Store(cfg.store_path, cfg.store.busy_timeout_ms)
    try:
        counts = store.counts()
        return f"{store.path}: integrity ok, schema v{store.schema_version}, {counts}"
    finally:
        store.close()


def check_broker(cfg: DeviceConfig, timeout_s: float = 5.0) -> str:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from biovita.errors import ConfigError

    if not cfg.mqtt.enabled:
        return "mqtt disabled in the config"
    result: dict = {}
    done = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"biovita-doctor-{cfg.device.id}",
        protocol=mqtt.MQTTv5,
    )
    if cfg.mqtt.username:
        client.username_pw_set(cfg.mqtt.username, cfg.mqtt.resolved_password())
    if cfg.mqtt.tls:
        client.tls_set(
            ca_certs=str(cfg.mqtt.ca_file) if cfg.mqtt.ca_file else None,
            certfile=str(cfg.mqtt.cert_file) if cfg.mqtt.cert_file else None,
            keyfile=str(cfg.mqtt.key_file) if cfg.mqtt.key_file else None,
        )
        client.tls_insecure_set(cfg.mqtt.tls_insecure)

    def on_connect(client, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    started = time.perf_counter()
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=10)
    except OSError as err:
        raise ConfigError(
            f"cannot reach the broker {cfg.mqtt.host}:{cfg.mqtt.port}: {err}",
            hint="check mqtt.host/port and the network; listen still works and queues detections",
        ) from err
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise ConfigError(f"the broker {cfg.mqtt.host}:{cfg.mqtt.port} did not answer")
        if result["rc"].is_failure:
            raise ConfigError(
                f"the broker refused the connection: {result['rc']}",
                hint="check mqtt.username / password / TLS settings",
            )
        ms = (time.perf_counter() - started) * 1000
        return f"{cfg.mqtt.host}:{cfg.mqtt.port} accepted an MQTT v5 connection in {ms:.0f} ms"
    finally:
        client.disconnect()
        client.loop_stop()


def run_checks(cfg: DeviceConfig) -> list[Check]:
    return [
        _run("audio", lambda: check_audio(cfg)),
        _run("bundle", lambda: check_bundle(cfg)),
        _run("runtime", lambda: check_runtime(cfg)),
        _run("disk", lambda: check_disk(cfg)),
        _run("store", lambda: check_store(cfg)),
        _run("broker", lambda: check_broker(cfg)),
    ]
