"""The audio front-ends: one definition shared by training, export and the device.

Every audio tower names its front-end, and its ONNX graph takes raw mono float32 PCM
``[B, samples]`` at that front-end's rate and computes the front-end's log-mel inside the graph
with fixed DFT kernels (TensorRT 10.3 in JetPack 6 has no STFT/DFT op). Two kinds exist:

- ``biovita`` (``FrontendSpec``): the compact student's 16-kHz natural-log HTK mel, no centring;
- ``clap`` (``ClapFrontendSpec``): exactly what ``transformers.ClapFeatureExtractor`` feeds
  pretrained CLAP / BioLingual / BioVITA (48 kHz, centred frames, Slaney mel, dB, 10-s
  repeat-padded windows); its numpy reference is ``biovita.clap_frontend``.

``frontend_spec`` reads either kind from a name (``"biovita"``, ``"clap"``), a dict (a stored
spec; one without ``kind`` is a biovita spec, as every spec written before the CLAP kind was) or a
spec. The kernels and the mel filterbanks are built here, in numpy, so the torch modules in
``trainer`` and these references use the very same numbers; ``log_mel`` is the reference the
torch version must match on the golden vectors in ``tests/biovita/golden``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from biovita.errors import AudioError, ConfigError

Padding = Literal["pad", "repeatpad", "repeat"]


class _WindowedSpec(BaseModel):
    """What every front-end kind shares: rate, classified windows, DFT frames, mel band."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: int = Field(16_000, gt=0, description="Hz; every input is resampled to this")
    window_s: float = Field(3.0, gt=0, description="length of one classified window, seconds")
    hop_s: float = Field(1.5, gt=0, description="step between classified windows, seconds")
    n_fft: int = Field(512, gt=0, description="DFT length (samples) of one spectrogram frame")
    hop_length: int = Field(320, gt=0, description="samples between spectrogram frames")
    n_mels: int = Field(64, gt=0)
    f_min: float = Field(50.0, ge=0)
    f_max: float = Field(8_000.0, gt=0)
    padding: Padding = Field(
        "pad",
        description="a clip shorter than a window: 'pad' with zeros, 'repeatpad' (tile whole "
        "copies, then zeros) or 'repeat' (tile, cut at the window), as ClapFeatureExtractor",
    )

    @model_validator(mode="after")
    def _check(self) -> _WindowedSpec:
        if self.f_max > self.sample_rate / 2:
            raise ConfigError(
                f"f_max {self.f_max} Hz is above the Nyquist frequency {self.sample_rate / 2} Hz",
                hint="lower f_max or raise sample_rate",
            )
        if self.f_min >= self.f_max:
            raise ConfigError("f_min must be below f_max", hint="check the front-end settings")
        if self.window_samples < self.n_fft:
            raise ConfigError(
                "window_s is shorter than one DFT frame", hint="raise window_s or lower n_fft"
            )
        return self

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_s * self.sample_rate))

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


class FrontendSpec(_WindowedSpec):
    """The biovita front-end: natural-log HTK mel of uncentred frames (the compact student's)."""

    kind: Literal["biovita"] = "biovita"
    log_offset: float = Field(1e-6, gt=0, description="log(mel + offset): keeps silence finite")

    def n_frames(self, n_samples: int | None = None) -> int:
        """Spectrogram frames for ``n_samples`` (default: one window); no centre padding."""
        n = self.window_samples if n_samples is None else n_samples
        return 1 + (n - self.n_fft) // self.hop_length


class ClapFrontendSpec(_WindowedSpec):
    """CLAP's front-end (``ClapFeatureExtractor`` of ``laion/clap-htsat-unfused``).

    Frames are centred (``n_fft // 2`` samples of reflection each side), the power spectrum goes
    through Slaney-normalised Slaney-scale mel filters, and ``10 log10(max(mel, power_floor))``
    is the feature, laid out by the tower as ``[frames, mels]``. A 10-s window at 48 kHz gives
    1001 frames. Clips longer than a window are cut to their first window (the extractor's
    ``rand_trunc`` crops at random, which no deployed model should do); fusion (the
    ``*-fused`` checkpoints) is not supported.
    """

    kind: Literal["clap"] = "clap"
    sample_rate: int = Field(48_000, gt=0, description="Hz; every input is resampled to this")
    window_s: float = Field(10.0, gt=0, description="length of one classified window, seconds")
    hop_s: float = Field(5.0, gt=0, description="step between classified windows, seconds")
    n_fft: int = Field(1024, gt=0, description="DFT length (samples) of one spectrogram frame")
    hop_length: int = Field(480, gt=0, description="samples between spectrogram frames")
    f_max: float = Field(14_000.0, gt=0)
    padding: Padding = Field("repeatpad", description="as ClapFeatureExtractor's `padding`")
    power_floor: float = Field(
        1e-10, gt=0, description="mel power floor before dB (the extractor's mel_floor)"
    )

    def n_frames(self, n_samples: int | None = None) -> int:
        """Spectrogram frames for ``n_samples`` (default: one window), centred frames."""
        n = self.window_samples if n_samples is None else n_samples
        return 1 + n // self.hop_length

    @classmethod
    def from_preprocessor_config(cls, config: dict[str, Any]) -> ClapFrontendSpec:
        """The spec of a CLAP checkpoint's ``preprocessor_config.json`` (a ClapFeatureExtractor)."""
        if config.get("truncation", "fusion") == "fusion":
            raise ConfigError(
                "this CLAP feature extractor uses truncation='fusion' (a fused checkpoint)",
                hint="use an unfused CLAP (e.g. laion/clap-htsat-unfused); fusion is not supported",
            )
        if config.get("top_db") is not None:
            raise ConfigError(
                f"top_db={config['top_db']} is not supported",
                hint="use an extractor without top_db",
            )
        return cls(
            sample_rate=config.get("sampling_rate", 48_000),
            window_s=config.get("max_length_s", 10),
            n_fft=config.get("fft_window_size", 1024),
            hop_length=config.get("hop_length", 480),
            n_mels=config.get("feature_size", 64),
            f_min=config.get("frequency_min", 0.0),
            f_max=config.get("frequency_max", 14_000.0),
            padding=config.get("padding", "repeatpad"),
        )


def _kind_of(value: Any) -> str:
    # Specs stored before the CLAP kind existed carry no `kind`: they are biovita specs.
    if isinstance(value, dict):
        return value.get("kind", "biovita")
    return getattr(value, "kind", "biovita")


AnyFrontendSpec = Annotated[
    Union[Annotated[FrontendSpec, Tag("biovita")], Annotated[ClapFrontendSpec, Tag("clap")]],
    Discriminator(_kind_of),
]
"""Either front-end kind, told apart by ``kind`` (pydantic field type for configs, manifests)."""

FRONTEND_KINDS: dict[str, type[_WindowedSpec]] = {"biovita": FrontendSpec, "clap": ClapFrontendSpec}
_ANY_SPEC: TypeAdapter = TypeAdapter(AnyFrontendSpec)


def frontend_spec(value: str | dict | _WindowedSpec | None) -> FrontendSpec | ClapFrontendSpec:
    """A front-end by name (``"biovita"``, ``"clap"``: that kind's defaults), stored dict, or spec."""
    if value is None:
        return FrontendSpec()
    if isinstance(value, (FrontendSpec, ClapFrontendSpec)):
        return value
    if isinstance(value, str):
        if value not in FRONTEND_KINDS:
            raise ConfigError(
                f"unknown front-end {value!r}",
                hint=f"name one of {', '.join(FRONTEND_KINDS)} or give the spec's fields",
            )
        return FRONTEND_KINDS[value]()
    try:
        return _ANY_SPEC.validate_python(value)
    except ValidationError as err:
        raise ConfigError(
            f"invalid front-end spec {value!r}: {err}",
            hint="kind is 'biovita' or 'clap'; see biovita/frontend.py for the fields",
        ) from err


def fit_window(pcm: np.ndarray, spec: _WindowedSpec) -> np.ndarray:
    """The first window of ``pcm`` (``[samples]``), a short clip padded as ``spec.padding`` says."""
    if len(pcm) == 0:
        raise AudioError("an empty clip has no window", hint="pass at least one sample of audio")
    return pad_window(pcm, spec.window_samples, spec.padding)


def pad_window(pcm: np.ndarray, n: int, padding: Padding = "pad") -> np.ndarray:
    """``pcm`` made ``n`` samples long: cut at the end, or padded as ``padding`` says.

    'repeatpad' tiles whole copies and zero-fills the rest, 'repeat' tiles and cuts, 'pad' fills
    with zeros, exactly as ``ClapFeatureExtractor`` does for a clip shorter than ``max_length``.
    """
    pcm = np.asarray(pcm)
    if len(pcm) >= n:
        return pcm[:n]
    if len(pcm) and padding == "repeat":
        pcm = np.tile(pcm, n // len(pcm) + 1)[:n]
    elif len(pcm) and padding == "repeatpad":
        pcm = np.tile(pcm, n // len(pcm))
    return np.pad(pcm, (0, n - len(pcm)))


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def _mel_filterbank(spec: FrontendSpec) -> np.ndarray:
    freqs = np.linspace(0.0, spec.sample_rate / 2, spec.n_bins)
    edges = mel_to_hz(np.linspace(hz_to_mel(spec.f_min), hz_to_mel(spec.f_max), spec.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank.setflags(write=False)
    return bank


def mel_filterbank(spec: FrontendSpec) -> np.ndarray:
    """Triangular HTK-mel filters, ``[n_mels, n_bins]`` float64 (read-only, cached)."""
    return _mel_filterbank(spec)


@lru_cache(maxsize=8)
def _dft_kernels(n_fft: int) -> np.ndarray:
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)  # periodic Hann
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2.0 * np.pi * k * n[None, :] / n_fft
    kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window], axis=0)
    kernels.setflags(write=False)
    return kernels


def dft_kernels(spec: _WindowedSpec) -> np.ndarray:
    """Windowed DFT as ``[2 * n_bins, n_fft]`` float64: rows are real parts, then imaginary.

    Used as one matrix over all frames by the torch front-ends, so no STFT op reaches the
    exported graph. The window is the periodic Hann of both kinds (``torch.hann_window``,
    transformers' ``window_function(n, "hann")``).
    """
    return _dft_kernels(spec.n_fft)


def frame(pcm: np.ndarray, spec: _WindowedSpec) -> np.ndarray:
    """``[..., samples]`` -> ``[..., n_frames, n_fft]`` views (no copy, no padding)."""
    if pcm.shape[-1] < spec.n_fft:
        raise AudioError(
            f"{pcm.shape[-1]} samples is shorter than one {spec.n_fft}-sample frame",
            hint="pass at least one full window of audio",
        )
    frames = np.lib.stride_tricks.sliding_window_view(pcm, spec.n_fft, axis=-1)
    return frames[..., :: spec.hop_length, :]


def log_mel(pcm: np.ndarray, spec: FrontendSpec) -> np.ndarray:
    """Reference log-mel: ``[..., samples]`` float -> ``[..., n_mels, n_frames]`` float32."""
    pcm = np.asarray(pcm, dtype=np.float64)
    spectrum = frame(pcm, spec) @ dft_kernels(spec).T  # [..., frames, 2*bins]
    real, imag = spectrum[..., : spec.n_bins], spectrum[..., spec.n_bins :]
    power = real * real + imag * imag
    mel = power @ mel_filterbank(spec).T  # [..., frames, n_mels]
    return np.log(mel + spec.log_offset).swapaxes(-1, -2).astype(np.float32)
