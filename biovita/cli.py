"""What every console script shares: error reporting and logging set-up.

Library code raises ``BiovitaError``; only here is it turned into text (problem, then hint) and an
exit status, so a user never sees a traceback for a problem they can fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from biovita.errors import BiovitaError

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (journald, Loki and friends parse it without a regex)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "t": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: int = 0, json_logs: bool = False) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    level = getattr(logging, os.environ.get("BIOVITA_LOG_LEVEL", ""), level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)


def run(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None = None
) -> int:
    """Parse, dispatch to ``args.func(args)``, and turn ``BiovitaError`` into a message + exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    setup_logging(getattr(args, "verbose", 0), getattr(args, "json_logs", False))
    try:
        result = args.func(args)
    except BiovitaError as err:
        print(f"error: {err.describe()}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    try:
        sys.stdout.flush()  # here, not at interpreter exit, where the error would be a traceback
    except BrokenPipeError:
        return _reader_went_away()
    return int(result or 0)


def _reader_went_away() -> int:
    """``cmd | head``: the reader closed the pipe; stop quietly, as a shell tool does.

    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE
