"""Logging for the ``metasrgan`` command: ``-v``/``-q`` on every subcommand.

Messages go through the standard :mod:`logging` module under the ``metasrgan`` logger, to
standard error: INFO by default, ``-v`` adds DEBUG (with logger names), ``-q`` keeps
warnings and errors only, ``-qq`` errors only.  Library code only logs; the command line
alone configures (:func:`setup`), and only the ``metasrgan`` logger, never the root one.
"""

from __future__ import annotations

import argparse
import logging
import sys

LOGGER = "metasrgan"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest's capture included)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on ``parser`` and on each of its subcommands' parsers (so that
    ``metasrgan data prepare ... -q`` works too)."""
    _add_flags(parser, 0)
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_flags(child, argparse.SUPPRESS)


def _add_flags(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_argument_group("verbosity")
    group.add_argument("-v", "--verbose", action="count", default=default,
                       help="more messages (-v: debug)")  # fmt: skip
    group.add_argument("-q", "--quiet", action="count", default=default,
                       help="fewer messages (-q: warnings and errors, -qq: errors)")  # fmt: skip


def level_of(verbose: int = 0, quiet: int = 0) -> int:
    """INFO by default, one step per ``-v`` (down) or ``-q`` (up)."""
    steps = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]
    return steps[max(0, min(len(steps) - 1, 1 - verbose + quiet))]


def setup_level(level: int) -> logging.Logger:
    """Send the ``metasrgan`` logger's records at ``level`` and above to standard error
    (idempotent: calling it again replaces the handler it installed)."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    fmt = "%(levelname)s %(name)s: %(message)s" if level <= logging.DEBUG else "%(message)s"
    handler.setFormatter(_Formatter(fmt))
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger


class _Formatter(logging.Formatter):
    """Plain messages for INFO; ``warning:``/``error:`` in front of the others."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self._fmt == "%(message)s" and record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def setup(args: argparse.Namespace) -> logging.Logger:
    """Configure from parsed ``-v``/``-q`` (absent flags count as zero)."""
    return setup_level(level_of(getattr(args, "verbose", 0), getattr(args, "quiet", 0)))
