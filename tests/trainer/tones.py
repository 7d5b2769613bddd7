"""Species of pure tones, in memory: training data whose loudness and size a test chooses."""

import numpy as np

from biovita.frontend import FrontendSpec
from biovita.taxonomy import Taxon
from trainer.data import Clip, SpeciesData

SPEC = FrontendSpec()


def tone(amplitude: float, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(SPEC.window_samples) / SPEC.sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def tone_data(
    amplitude: float = 1.0, clips_per_species: tuple[int, ...] = (3, 3), cache_audio: bool = True
) -> SpeciesData:
    """One species per entry of ``clips_per_species``, with that many tones of its own pitch."""
    taxa = [
        Taxon(species_id=f"s{i}", scientific_name=f"Genus species{i}")
        for i in range(len(clips_per_species))
    ]
    made = [
        Clip(s, f"tone{s}-{k}", lambda s=s, k=k: tone(amplitude, 500.0 * (s + 1) + 10 * k))
        for s, n in enumerate(clips_per_species)
        for k in range(n)
    ]
    return SpeciesData(taxa, made, cache_audio=cache_audio)
