"""The front-ends as torch layers, exportable to ONNX and TensorRT 10.3.

TensorRT 10.3 in JetPack 6 has no STFT/DFT op, so the windowed DFT is a fixed matrix: the signal is
cut into hop-sized blocks (Reshape), neighbouring blocks are joined into frames (Slice + Concat),
and one MatMul applies the windowed-DFT kernels to every frame. This is the same arithmetic as a
strided Conv1d with the kernels as weights, but runs as one large GEMM: in ONNX Runtime on a CPU it
measured about 35% faster than the Conv1d form (bench/export_latency.py), and it is the op TensorRT
and INT8 kernels are best at. Kernels and filterbanks come from ``biovita.frontend`` and
``biovita.clap_frontend``, so these modules and the numpy references compute the same numbers;
they are buffers, not parameters: training never moves them.

``frontend_module(spec)`` builds the module of either kind; both map ``[B, samples]`` to
``[B, n_mels, frames]``.

A front-end always computes in its kernels' precision (float32), autocast or not: a full-scale
tone after the +6 dB gain augmentation has a power spectrum far past float16's 65504, so under
fp16 autocast the mel turned inf and the log NaN (and one such window made BatchNorm's running
statistics NaN for good); bf16 keeps the range but loses ~11 log units to rounding. Its output is
a bounded log-mel, which the tower after it may take in half precision.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from biovita.clap_frontend import slaney_filterbank
from biovita.frontend import ClapFrontendSpec, FrontendSpec, dft_kernels, mel_filterbank


def frame_span(n_fft: int, hop: int, n_frames: int) -> int:
    """Samples ``frames`` reads: whole hop-sized blocks, so up to ``hop`` past the last frame."""
    return (n_frames - 1 + -(-n_fft // hop)) * hop


def frames(pcm: torch.Tensor, n_fft: int, hop: int, n_frames: int) -> torch.Tensor:
    """``[B, samples]`` -> ``[B, n_frames, n_fft]`` without an STFT/Unfold op."""
    blocks_per_frame = -(-n_fft // hop)
    n_blocks = n_frames - 1 + blocks_per_frame
    need = frame_span(n_fft, hop, n_frames)
    if pcm.shape[-1] < need:  # samples past the last frame's end: never inside a frame
        pcm = nn.functional.pad(pcm, (0, need - pcm.shape[-1]))
    blocks = pcm[:, :need].reshape(-1, n_blocks, hop)
    joined = torch.cat([blocks[:, i : i + n_frames] for i in range(blocks_per_frame)], dim=2)
    return joined[:, :, :n_fft]


class _MelPower(nn.Module):
    """Frames -> mel power through the windowed-DFT matrix and a mel filterbank."""

    def __init__(
        self, spec: FrontendSpec | ClapFrontendSpec, filterbank, dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.spec = spec
        kernels = torch.tensor(dft_kernels(spec), dtype=dtype).T.contiguous()
        self.register_buffer("dft", kernels, persistent=False)  # [n_fft, 2*bins]
        mel = torch.tensor(filterbank, dtype=dtype)
        self.register_buffer("mel", mel, persistent=False)  # [n_mels, bins]

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        with full_precision(pcm.device):
            if pcm.dtype != self.dft.dtype:  # no Cast node in the exported float32 graph
                pcm = pcm.to(self.dft.dtype)
            return self.log_mel(pcm)

    def log_mel(self, pcm: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mel_power(self, framed: torch.Tensor) -> torch.Tensor:
        spectrum = torch.matmul(framed, self.dft)  # [B, frames, 2*bins]
        real, imag = spectrum.split(self.spec.n_bins, dim=2)
        power = real * real + imag * imag
        return torch.matmul(self.mel, power.transpose(1, 2))  # [B, n_mels, frames]


class LogMel(_MelPower):
    """The biovita front-end: raw mono PCM ``[B, samples]`` -> log-mel ``[B, n_mels, frames]``."""

    def __init__(self, spec: FrontendSpec, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(spec, mel_filterbank(spec), dtype)

    def frames(self, pcm: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        return frames(pcm, spec.n_fft, spec.hop_length, spec.n_frames(pcm.shape[-1]))

    def log_mel(self, pcm: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel_power(self.frames(pcm)) + self.spec.log_offset)


class ClapLogMel(_MelPower):
    """CLAP's front-end: raw mono PCM ``[B, samples]`` -> dB Slaney mel ``[B, n_mels, frames]``.

    The centring reflection is two reversed slices (Slice with step -1) joined by Concat, not a
    reflect-mode Pad, which TensorRT parsers have handled unevenly. Repeat-padding of a short clip
    happens before the graph (``biovita.frontend.fit_window``): the graph takes whole windows.
    """

    def __init__(self, spec: ClapFrontendSpec, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(spec, slaney_filterbank(spec), dtype)

    def frames(self, pcm: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        half, n_frames = spec.n_fft // 2, spec.n_frames(pcm.shape[-1])
        # The right reflection also fills the block tail past the last frame (never inside a
        # frame), so no Pad reaches the graph: onnxslim folds that zero-Pad wrongly here.
        tail = frame_span(spec.n_fft, spec.hop_length, n_frames) - (pcm.shape[-1] + 2 * half)
        left = pcm[:, 1 : half + 1].flip(-1)
        right = pcm[:, -half - 1 - max(tail, 0) : -1].flip(-1)
        padded = torch.cat([left, pcm, right], dim=1)
        return frames(padded, spec.n_fft, spec.hop_length, n_frames)

    def log_mel(self, pcm: torch.Tensor) -> torch.Tensor:
        mel = self.mel_power(self.frames(pcm)).clamp(min=self.spec.power_floor)
        return torch.log(mel) * (10.0 / math.log(10.0))


def frontend_module(
    spec: FrontendSpec | ClapFrontendSpec, dtype: torch.dtype = torch.float32
) -> LogMel | ClapLogMel:
    """The torch front-end of ``spec``'s kind (``dtype`` of its kernels: float64 to check the
    arithmetic against a reference without float32 rounding)."""
    kind = ClapLogMel if isinstance(spec, ClapFrontendSpec) else LogMel
    return kind(spec, dtype)


def full_precision(device: torch.device) -> torch.autocast:
    """Autocast off for ``device``'s kind: what every front-end module runs its arithmetic in."""
    return torch.autocast(device.type, enabled=False)
