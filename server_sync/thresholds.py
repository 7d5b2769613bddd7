"""Per-species thresholds suggested from what reviewers said about the scores.

For each species: among its reviewed detections, the lowest score threshold whose precision
(confirmed / all reviewed at or above it) reaches the target. The lowest such threshold keeps the
most true detections. Reviews only ever see detections that passed the device's current
threshold, so a suggestion can raise a threshold with evidence but never justify lowering it below
the scores already seen.

The output is the device config's own format (``device/config.py``, ``ClassifySection``)::

    [classify.species_thresholds]
    "sp_owl" = 0.62
"""

from __future__ import annotations

from dataclasses import dataclass

from server_sync.records import ReviewedScore

DEFAULT_TARGET_PRECISION = 0.9
DEFAULT_MIN_REVIEWS = 5


@dataclass(frozen=True)
class Suggestion:
    species_id: str
    threshold: float | None  # None: too few reviews to say
    precision: float | None  # of reviewed detections at or above the threshold
    kept: int  # correct reviewed detections kept at the threshold
    correct: int  # correct reviewed detections in all
    reviewed: int
    reason: str


def suggest_threshold(
    species_id: str,
    scores: list[ReviewedScore],
    target_precision: float = DEFAULT_TARGET_PRECISION,
    min_reviews: int = DEFAULT_MIN_REVIEWS,
) -> Suggestion:
    correct = sum(s.correct for s in scores)
    if len(scores) < min_reviews:
        return Suggestion(
            species_id, None, None, 0, correct, len(scores), f"needs {min_reviews} reviews"
        )
    ranked = sorted(scores, key=lambda s: s.score, reverse=True)
    best: Suggestion | None = None
    true_above = 0
    for n, item in enumerate(ranked, start=1):
        true_above += item.correct
        tied_below = n < len(ranked) and ranked[n].score == item.score
        if tied_below:
            continue  # a threshold cannot split equal scores
        precision = true_above / n
        if precision >= target_precision:
            best = Suggestion(
                species_id,
                round(item.score, 4),
                precision,
                true_above,
                correct,
                len(scores),
                f"lowest score with precision >= {target_precision:g}",
            )
    if best is not None:
        return best
    top_false = max(s.score for s in scores if not s.correct)
    return Suggestion(
        species_id,
        round(min(1.0, top_false + 1e-4), 4),
        None,
        sum(s.correct and s.score > top_false for s in scores),
        correct,
        len(scores),
        f"no threshold reaches precision {target_precision:g}: set above every false positive",
    )


def thresholds_toml(suggestions: list[Suggestion]) -> str:
    """A ``[classify.species_thresholds]`` table for the device config (only decided species)."""
    lines = ["[classify.species_thresholds]"]
    for s in sorted(suggestions, key=lambda s: s.species_id):
        if s.threshold is not None:
            lines.append(f"{toml_string(s.species_id)} = {s.threshold:.4f}")
    return "\n".join(lines) + "\n"


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (a quoted key is one), valid for any species id.

    Not ``json.dumps``: JSON writes a character outside the BMP as a surrogate pair
    (``\\ud83e\\udd89``), and TOML's ``\\u`` escapes must each be a whole character.
    """
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate is no character: TOML cannot hold it
            out.append("\\uFFFD")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
