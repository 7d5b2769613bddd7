"""What the e2e suites proved, counted as they run and printed at the end of the test session
(``conftest.pytest_terminal_summary``), whatever the -s / -q flags: the numbers the issue asks to
see in the test output and that docs/BENCHMARKS.md records."""

from __future__ import annotations

from collections import Counter

FAULTS = Counter()  # fault kind -> faults survived
ROWS = Counter()  # "checked", "lost", "duplicated", "overtaken"
BAD_INPUTS = Counter()  # input family -> inputs tried (each answered with a clear error)
SECURITY = Counter()  # attack kind -> attempts refused
FUZZ = Counter()  # target -> generated cases run
FUZZ_CRASHES = Counter()  # target -> cases that raised where they must not


def fault(kind: str, n: int = 1) -> None:
    FAULTS[kind] += n


def rows(checked: int, lost: int, duplicated: int) -> None:
    ROWS.update(checked=checked, lost=lost, duplicated=duplicated)


def order(overtaken: int) -> None:
    ROWS["order checked"] += 1
    ROWS["overtaken"] += overtaken


def refused(kind: str, n: int = 1) -> None:
    SECURITY[kind] += n


def bad_input(family: str) -> None:
    BAD_INPUTS[family] += 1


def fuzzed(target: str, cases: int = 1, crashes: int = 0) -> None:
    FUZZ[target] += cases
    FUZZ_CRASHES[target] += crashes


def lines() -> list[str]:
    out: list[str] = []
    if FAULTS:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(FAULTS.items()))
        out.append(f"faults survived: {sum(FAULTS.values())} ({kinds})")
    if ROWS:
        out.append(
            f"detections checked end to end: {ROWS['checked']}, rows lost: {ROWS['lost']}, "
            f"duplicates: {ROWS['duplicated']}"
        )
    if ROWS["order checked"]:
        out.append(
            f"rows stored after a row the device committed later (after broker restarts, "
            f"{ROWS['order checked']} device runs): {ROWS['overtaken']}"
        )
    if BAD_INPUTS:
        families = ", ".join(f"{k}: {n}" for k, n in sorted(BAD_INPUTS.items()))
        out.append(
            f"bad inputs tried: {sum(BAD_INPUTS.values())}, each answered with a clear error "
            f"({families})"
        )
    if FUZZ:
        targets = ", ".join(f"{k}: {n}" for k, n in sorted(FUZZ.items()))
        out.append(
            f"fuzz cases: {sum(FUZZ.values())} ({targets}), crashes: {sum(FUZZ_CRASHES.values())}"
        )
    if SECURITY:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(SECURITY.items()))
        out.append(f"security attempts refused: {sum(SECURITY.values())} ({kinds})")
    return out
