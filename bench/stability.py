"""``biovita-bench stability``: how far a tower's answer moves when its window moves a little.

A recorder cuts windows wherever its clock puts them, so a call lands at any offset, down to a
fraction of the 20-ms front-end hop. A tower whose top-1 species changes when the window moves by
one hop decides on alignment, not on the call. For every tower of a bundle (run by the device's
ONNX Runtime backend) this measures the cosine between each window's embedding and the embedding
of the same window shifted by one sample up to a tenth of a second, and how often the top-1
species (against the bundle's bank) stays the same, on the call and background windows of
soundscapes with ground truth.

Where a bundle holds two towers (INT8 and its FP32 alternate), the same two numbers between the
towers on the unshifted windows put quantisation on the same scale: an INT8 tower that moves the
answer less than a one-hop shift does is not the weak link.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.detection import read_truth
from bench.events import TimedEvent
from bench.models import OnnxAudio
from bench.reports import markdown_table
from biovita.audio import load_audio
from biovita.bank import SpeciesBank, l2_normalise
from biovita.bundle import load_bundle
from biovita.errors import ManifestError
from biovita.frontend import FrontendSpec

CALL_OVERLAP_S = 1.0  # a window "holds a call" that fills >= 1 s of it (or all of a shorter call)
KINDS = ("calls", "background")


def shifts(spec: FrontendSpec) -> dict[str, int]:
    """Shifts in samples, from below anything audible to five front-end hops."""
    return {
        "1 sample": 1,
        "1 ms": spec.sample_rate // 1000,
        "10 ms": spec.sample_rate // 100,
        f"1 hop ({1000 * spec.hop_length // spec.sample_rate} ms)": spec.hop_length,
        "100 ms": spec.sample_rate // 10,
    }


def _holds(start_s: float, end_s: float, call: TimedEvent) -> bool:
    """The window holds the whole call, or at least ``CALL_OVERLAP_S`` of a longer one."""
    overlap = min(end_s, call.end_s) - max(start_s, call.start_s)
    return overlap >= min(CALL_OVERLAP_S, call.end_s - call.start_s) - 1e-6


def _kind(start_s: float, window_s: float, reach_s: float, truth: list[TimedEvent]) -> str | None:
    """``calls``, ``background`` (no call within reach of any shift), or None (a call's edge)."""
    if any(_holds(start_s, start_s + window_s, t) for t in truth):
        return "calls"
    if all(t.end_s <= start_s or t.start_s >= start_s + reach_s for t in truth):
        return "background"
    return None


@dataclass(frozen=True)
class SoundscapeWindows:
    """Window starts at the device's hop over soundscapes, and which of them hold a call.

    Windows that catch only the edge of a call are left out: they are neither a call nor
    background, and a shift moves them between the two.
    """

    audio: list[np.ndarray]
    starts: list[np.ndarray]
    is_call: np.ndarray
    window: int

    @classmethod
    def read(
        cls, pairs: list[tuple[Path, Path]], spec: FrontendSpec, max_shift: int
    ) -> SoundscapeWindows:
        audio, starts, kinds = [], [], []
        reach_s = spec.window_s + max_shift / spec.sample_rate
        for wav, truth_csv in pairs:
            samples, rate = load_audio(wav, spec.sample_rate)
            last = len(samples) - spec.window_samples - max_shift
            truth = read_truth(truth_csv)
            found = [
                (start, kind)
                for start in range(0, last + 1, spec.hop_samples)
                if (kind := _kind(start / rate, spec.window_s, reach_s, truth))
            ]
            if found:
                audio.append(samples)
                starts.append(np.array([start for start, _ in found]))
                kinds += [kind for _, kind in found]
        if not kinds:
            raise ManifestError(
                "no soundscape holds a window plus the largest shift "
                f"({spec.window_s + max_shift / spec.sample_rate:g} s) of calls or background",
                hint="pass soundscapes of a minute or more with their truth CSV",
            )
        return cls(audio, starts, np.array(kinds) == "calls", spec.window_samples)

    def pcm(self, shift: int = 0) -> np.ndarray:
        """Every window, moved ``shift`` samples later, as ``[N, window]`` float32."""
        return np.concatenate(
            [
                np.stack([samples[s + shift : s + shift + self.window] for s in begin])
                for samples, begin in zip(self.audio, self.starts, strict=True)
            ]
        ).astype(np.float32)


@dataclass(frozen=True)
class Agreement:
    tower: str
    change: str  # "1 hop (20 ms)" or "fp32 tower" (the other tower, same windows)
    kind: str  # calls | background (windows on a call's edge are left out)
    windows: int
    mean_cosine: float
    top1_agreement: float


def agreement(
    tower: str, change: str, a: np.ndarray, b: np.ndarray, is_call: np.ndarray, bank: SpeciesBank
) -> list[Agreement]:
    cosine = np.sum(l2_normalise(a) * l2_normalise(b), axis=1)
    same = bank.similarities(a).argmax(1) == bank.similarities(b).argmax(1)
    rows = []
    for kind, mask in zip(KINDS, (is_call, ~is_call), strict=True):
        if mask.any():
            rows.append(
                Agreement(
                    tower,
                    change,
                    kind,
                    int(mask.sum()),
                    float(cosine[mask].mean()),
                    float(same[mask].mean()),
                )
            )
    return rows


def run_stability(bundle_path: Path, pairs: list[tuple[Path, Path]]) -> list[Agreement]:
    bundle = load_bundle(bundle_path)
    spec = bundle.manifest.frontend
    moves = shifts(spec)
    found = SoundscapeWindows.read(pairs, spec, max(moves.values()))
    towers = [bundle.manifest.tower, *bundle.manifest.alternates]
    rows: list[Agreement] = []
    unshifted: dict[str, np.ndarray] = {}
    for tower in towers:
        model = OnnxAudio(bundle, tower)
        reference = unshifted[tower.precision] = model.audio(found.pcm())
        for change, shift in tqdm(moves.items(), desc=model.name):
            moved = model.audio(found.pcm(shift))
            rows += agreement(tower.precision, change, reference, moved, found.is_call, bundle.bank)
    primary = towers[0].precision
    for other in towers[1:]:
        rows += agreement(
            primary,
            f"{other.precision} tower",
            unshifted[other.precision],
            unshifted[primary],
            found.is_call,
            bundle.bank,
        )
    return rows


def stability_markdown(rows: list[Agreement]) -> str:
    """One line per (tower, change): cosine and top-1 agreement on call and background windows."""
    lines: dict[tuple[str, str], dict[str, Agreement]] = {}
    for row in rows:
        lines.setdefault((row.tower, row.change), {})[row.kind] = row
    header = ["tower", "against", "call windows", "cosine", "top-1 kept %"]
    header += ["background windows", "cosine", "top-1 kept %"]
    table = []
    for (tower, change), by_kind in lines.items():
        cells: list[object] = [
            tower,
            f"itself shifted {change}" if "tower" not in change else change,
        ]
        for kind in KINDS:
            r = by_kind.get(kind)
            cells += (
                [r.windows, f"{r.mean_cosine:.4f}", 100 * r.top1_agreement] if r else ["0", "", ""]
            )
        table.append(cells)
    return markdown_table(header, table)


def to_json(rows: list[Agreement]) -> list[dict]:
    return [asdict(r) for r in rows]
