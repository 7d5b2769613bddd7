"""The log-mel front-end as torch layers, exportable to ONNX and TensorRT 10.3.

TensorRT 10.3 in JetPack 6 has no STFT/DFT op, so the windowed DFT is a fixed matrix: the signal is
cut into hop-sized blocks (Reshape), neighbouring blocks are joined into frames (Slice + Concat),
and one MatMul applies the windowed-DFT kernels to every frame. This is the same arithmetic as a
strided Conv1d with the kernels as weights, but runs as one large GEMM: in ONNX Runtime on a CPU it
measured about 35% faster than the Conv1d form (bench/export_latency.py), and it is the op TensorRT
and INT8 kernels are best at. Kernels and filterbank come from ``biovita.frontend``, so this
module and the numpy reference compute the same numbers; they are buffers, not parameters:
training never moves them.

The front-end always computes in float32, autocast or not: a full-scale tone after the +6 dB gain
augmentation has a power spectrum far past float16's 65504, so under fp16 autocast the mel turned
inf and the log NaN (and one such window made BatchNorm's running statistics NaN for good); bf16
keeps the range but loses ~11 log units to rounding. Its output is a bounded log-mel, which the
tower after it may take in half precision.
"""

from __future__ import annotations

import torch
from torch import nn

from biovita.frontend import FrontendSpec, dft_kernels, mel_filterbank


class LogMel(nn.Module):
    """Raw mono PCM ``[B, samples]`` -> log-mel ``[B, n_mels, frames]``."""

    def __init__(self, spec: FrontendSpec) -> None:
        super().__init__()
        self.spec = spec
        kernels = torch.from_numpy(dft_kernels(spec).astype("float32")).T.contiguous()
        self.register_buffer("dft", kernels, persistent=False)  # [n_fft, 2*bins]
        mel = torch.from_numpy(mel_filterbank(spec).astype("float32"))
        self.register_buffer("mel", mel, persistent=False)  # [n_mels, bins]

    def frames(self, pcm: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` -> ``[B, frames, n_fft]`` without an STFT/Unfold op."""
        hop, n_fft = self.spec.hop_length, self.spec.n_fft
        n_frames = self.spec.n_frames(pcm.shape[-1])
        blocks_per_frame = -(-n_fft // hop)
        n_blocks = n_frames - 1 + blocks_per_frame
        need = n_blocks * hop
        if pcm.shape[-1] < need:  # samples past the last frame's end: never inside a frame
            pcm = nn.functional.pad(pcm, (0, need - pcm.shape[-1]))
        blocks = pcm[:, :need].reshape(-1, n_blocks, hop)
        joined = torch.cat([blocks[:, i : i + n_frames] for i in range(blocks_per_frame)], dim=2)
        return joined[:, :, :n_fft]

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        with full_precision(pcm.device):
            if pcm.dtype != torch.float32:  # no Cast node in the exported float32 graph
                pcm = pcm.float()
            spectrum = torch.matmul(self.frames(pcm), self.dft)  # [B, frames, 2*bins]
            real, imag = spectrum.split(self.spec.n_bins, dim=2)
            power = real * real + imag * imag
            mel = torch.matmul(self.mel, power.transpose(1, 2))  # [B, n_mels, frames]
            return torch.log(mel + self.spec.log_offset)


def full_precision(device: torch.device) -> torch.autocast:
    """Autocast off for ``device``'s kind: what every front-end module runs its arithmetic in."""
    return torch.autocast(device.type, enabled=False)
