"""The BioVITA-Bench protocol: directions, levels, candidate lists and their CSV files.

Every retrieval query gets a list of candidate taxa: the correct one and up to 99 distractors. A
taxon's score is the maximum cosine over its gallery items (all of its clips, images or prompt
texts in the split), and a hit at k means the correct taxon ranks among the k best candidates.

Levels (as in the BioVITA paper, Sec. 5): at ``species`` level the correct candidate is the
query's own species and the distractors are other species. At ``genus`` level the correct
candidate is a *different* species of the query's genus and every distractor is of another
genus; at ``family`` level the correct candidate is a species of the query's family but of
another genus, and every distractor is of another family. The query's own species is never a
candidate at genus or family level, so a model can only score there by knowing the taxonomy.

Candidate lists are written in the layout of the published BioVITA-Bench evaluation
(github.com/dahlian00/BioVITA, ``eval/eval_benchmark.py``), so one reader serves both::

    <bench>/ids/audio_index.csv   id,file_path[,species_id]
    <bench>/ids/image_index.csv   id,file_path[,species_id]
    <bench>/ids/text_index.csv    id,text[,species_id]              (ours: one text per id)
                                  id,species,genus,family[,class]   (published: a text per level)
    <bench>/<level>/test_<query>_to_<gallery>.csv
        task                   A2T, T2A, A2I, I2A, I2T or T2I
        taxon_level            species | genus | family
        query_payload_id       an id of the query modality's index
        correct_taxon          the taxon that counts as a hit
        candidates_taxa        JSON list of candidate taxa (names or ids), correct one included
        candidates_target_ids  JSON list, per candidate, of gallery ids of the gallery modality
        query_taxon            ours only: the query's own species (read when present)

In the published text index the text of an id depends on the level (the column named after the
level holds the text to embed); ours holds one ``text`` column used at every level. Relative
``file_path`` values are resolved against the ``ids`` folder, or against ``media_root`` when given.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from biovita.errors import ManifestError
from biovita.manifest import read_csv_rows

MODALITIES = ("audio", "image", "text")
LEVELS = ("species", "genus", "family")
SPLITS = ("seen", "unseen")
N_CANDIDATES = 100
KS = (1, 5, 10)
TEXT_ANY_LEVEL = "*"
CANDIDATE_COLUMNS = (
    "task",
    "taxon_level",
    "query_payload_id",
    "correct_taxon",
    "candidates_taxa",
    "candidates_target_ids",
    "query_taxon",
)


@dataclass(frozen=True)
class Direction:
    """One retrieval direction: queries of one modality against galleries of another."""

    code: str
    query: str
    gallery: str

    @property
    def label(self) -> str:
        return f"{self.code[0]}->{self.code[2]}"

    @property
    def filename(self) -> str:
        return f"test_{self.query}_to_{self.gallery}.csv"


DIRECTIONS = (
    Direction("A2T", "audio", "text"),
    Direction("T2A", "text", "audio"),
    Direction("A2I", "audio", "image"),
    Direction("I2A", "image", "audio"),
    Direction("I2T", "image", "text"),
    Direction("T2I", "text", "image"),
)
DIRECTION_BY_CODE = {d.code: d for d in DIRECTIONS}


def direction(code: str) -> Direction:
    try:
        return DIRECTION_BY_CODE[code.upper()[:3]]
    except KeyError:
        raise ManifestError(
            f"unknown retrieval direction {code!r}",
            hint=f"use one of {', '.join(DIRECTION_BY_CODE)}",
        ) from None


@dataclass(frozen=True)
class Query:
    """One row of a candidate list."""

    query_id: int
    correct_taxon: str
    candidates: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    query_taxon: str = ""

    @property
    def correct_index(self) -> int:
        return self.candidates.index(self.correct_taxon)


@dataclass
class Task:
    """All queries of one direction at one level (one CSV file)."""

    direction: Direction
    level: str
    queries: list[Query]
    skipped: int = 0  # queries the builder could not pose (e.g. a genus with one species)


@dataclass
class BenchmarkIndex:
    """The items the candidate lists refer to, by integer id, per modality.

    ``text`` maps a level (or ``TEXT_ANY_LEVEL``) to ``{id: text}``; ``species`` maps
    ``(modality, id)`` to the item's species where the index records it. ``query_species``, when
    not empty, limits which species' items are posed as queries (the rest only fill galleries).
    """

    audio: dict[int, Path] = field(default_factory=dict)
    image: dict[int, Path] = field(default_factory=dict)
    text: dict[str, dict[int, str]] = field(default_factory=dict)
    species: dict[tuple[str, int], str] = field(default_factory=dict)
    query_species: frozenset[str] = frozenset()

    def may_query(self, species_id: str) -> bool:
        return not self.query_species or species_id in self.query_species

    def texts_for(self, level: str) -> dict[int, str]:
        if level in self.text:
            return self.text[level]
        if TEXT_ANY_LEVEL in self.text:
            return self.text[TEXT_ANY_LEVEL]
        raise ManifestError(
            f"the text index has no texts for level {level!r}",
            hint="text_index.csv needs a 'text' column, or one column per level",
        )


# ---------------------------------------------------------------------------------------------
# Writing and reading the CSV layout
# ---------------------------------------------------------------------------------------------


def _write_rows(path: Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(list(header))
        writer.writerows(rows)
    tmp.replace(path)


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def write_index(ids_dir: Path, index: BenchmarkIndex) -> None:
    ids_dir = Path(ids_dir)
    for modality in ("audio", "image"):
        items = getattr(index, modality)
        _write_rows(
            ids_dir / f"{modality}_index.csv",
            ("id", "file_path", "species_id"),
            (
                (i, _relative(p, ids_dir), index.species.get((modality, i), ""))
                for i, p in sorted(items.items())
            ),
        )
    texts = index.texts_for(TEXT_ANY_LEVEL)
    _write_rows(
        ids_dir / "text_index.csv",
        ("id", "text", "species_id"),
        ((i, t, index.species.get(("text", i), "")) for i, t in sorted(texts.items())),
    )


def _read_csv(path: Path, required: set[str]) -> list[dict[str, str]]:
    return read_csv_rows(
        path,
        required,
        columns_hint="see bench/protocol.py for the BioVITA-Bench CSV layout",
        missing_hint="write the benchmark first (--out)",
    )


def _int_id(text: str, where: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ManifestError(
            f"{where}: id {text!r} is not an integer", hint="ids are 0, 1, ..."
        ) from None


def read_index(ids_dir: Path, media_root: Path | None = None) -> BenchmarkIndex:
    ids_dir = Path(ids_dir)
    root = Path(media_root) if media_root else ids_dir
    index = BenchmarkIndex()
    for modality in ("audio", "image"):
        path = ids_dir / f"{modality}_index.csv"
        items = getattr(index, modality)
        for n, row in enumerate(_read_csv(path, {"id", "file_path"}), start=2):
            i = _int_id(row["id"], f"{path}:{n}")
            file_path = Path(row["file_path"])
            items[i] = file_path if file_path.is_absolute() else root / file_path
            if row.get("species_id"):
                index.species[(modality, i)] = row["species_id"]
    path = ids_dir / "text_index.csv"
    rows = _read_csv(path, {"id"})
    columns = set(rows[0]) if rows else set()
    level_columns = [c for c in LEVELS if c in columns]
    if level_columns:  # the published layout: the level's column is the text to embed
        for level in level_columns:
            index.text[level] = {
                _int_id(r["id"], str(path)): r[level] for r in rows if (r[level] or "").strip()
            }
    elif "text" in columns:
        index.text[TEXT_ANY_LEVEL] = {_int_id(r["id"], str(path)): r["text"] for r in rows}
    elif rows:
        raise ManifestError(
            f"{path} has neither a 'text' column nor per-level columns",
            hint="add a 'text' column (ours) or species,genus,family columns (published layout)",
        )
    for r in rows:
        if r.get("species_id"):
            index.species[("text", int(r["id"]))] = r["species_id"]
    return index


def write_task(bench_dir: Path, task: Task) -> Path:
    path = Path(bench_dir) / task.level / task.direction.filename
    _write_rows(
        path,
        CANDIDATE_COLUMNS,
        (
            (
                task.direction.code,
                task.level,
                q.query_id,
                q.correct_taxon,
                json.dumps(list(q.candidates)),
                json.dumps([list(g) for g in q.groups], separators=(",", ":")),
                q.query_taxon,
            )
            for q in task.queries
        ),
    )
    return path


def read_task(path: Path) -> Task:
    """One candidate CSV (ours or the published one); rows whose answer is not a candidate are
    counted as skipped, as the published evaluator does."""
    path = Path(path)
    rows = _read_csv(
        path,
        {
            "task",
            "taxon_level",
            "query_payload_id",
            "correct_taxon",
            "candidates_taxa",
            "candidates_target_ids",
        },
    )
    if not rows:  # nothing could be posed (e.g. no genus with two species): an empty task
        code = next((d.code for d in DIRECTIONS if d.filename == path.name), None)
        if code is None or path.parent.name not in LEVELS:
            raise ManifestError(f"{path} holds no queries", hint="re-write the benchmark")
        return Task(direction(code), path.parent.name, [])
    queries, skipped = [], 0
    for n, row in enumerate(rows, start=2):
        where = f"{path}:{n}"
        try:
            candidates = tuple(str(c) for c in json.loads(row["candidates_taxa"]))
            groups = tuple(
                tuple(int(i) for i in g) for g in json.loads(row["candidates_target_ids"])
            )
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise ManifestError(
                f"{where}: candidate columns are not JSON lists: {err}",
                hint="candidates_taxa is a JSON list of names, candidates_target_ids a list of "
                "lists of ids",
            ) from err
        if len(groups) != len(candidates):
            raise ManifestError(
                f"{where}: {len(candidates)} candidates but {len(groups)} id groups",
                hint="one list of gallery ids per candidate taxon",
            )
        if row["correct_taxon"] not in candidates:
            skipped += 1
            continue
        queries.append(
            Query(
                query_id=_int_id(row["query_payload_id"], where),
                correct_taxon=row["correct_taxon"],
                candidates=candidates,
                groups=groups,
                query_taxon=row.get("query_taxon") or "",
            )
        )
    return Task(direction(rows[0]["task"]), rows[0]["taxon_level"], queries, skipped)


def task_paths(bench_dir: Path) -> list[Path]:
    """Every candidate CSV present under ``bench_dir``, in protocol order."""
    bench_dir = Path(bench_dir)
    paths = [bench_dir / lv / d.filename for lv in LEVELS for d in DIRECTIONS]
    found = [p for p in paths if p.is_file()]
    if not found:
        raise ManifestError(
            f"no candidate lists under {bench_dir}",
            hint="expected <dir>/{species,genus,family}/test_<query>_to_<gallery>.csv",
        )
    return found
