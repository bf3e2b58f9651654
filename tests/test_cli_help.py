"""Every command's ``--help`` shows a runnable example and the trained scale range, and
takes ``-v``/``-q``; the examples parse with the command's own parser."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import shlex

import pytest

from metasrgan import logs
from metasrgan.cli import COMMANDS, EXAMPLES, _epilog, main


def _parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"metasrgan {name}", epilog=_epilog(name))
    module.add_arguments(parser)
    logs.add_arguments(parser)
    return parser


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_has_an_example_and_the_trained_range(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and f"metasrgan {name} " in text
    assert "1.1-4.0" in text
    assert "-v, --verbose" in text and "-q, --quiet" in text


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_parse(name):
    for line in EXAMPLES[name].splitlines():
        words = shlex.split(line.strip())
        assert words[:2] == ["metasrgan", name]
        _parser(name).parse_args(words[2:])  # exits (fails the test) on a bad example


def test_bids_examples_parse():
    from metasrgan.commands.bids import DESCRIPTION

    lines = re.findall(r"^  (metasrgan bids .*(?:\n      .*)*)", DESCRIPTION, re.M)
    assert lines
    for text in lines:
        _parser("bids").parse_args(shlex.split(text.replace("\\\n", " "))[2:])


def test_verbosity_levels():
    assert logs.level_of() == logging.INFO
    assert logs.level_of(verbose=1) == logging.DEBUG
    assert logs.level_of(quiet=1) == logging.WARNING
    assert logs.level_of(quiet=5) == logging.ERROR


def test_quiet_and_verbose_reach_the_logger(tmp_path, capsys):
    from fixtures.bids import make_bids_dataset

    raw = make_bids_dataset(tmp_path / "raw")
    args = ["bids", str(raw), str(tmp_path / "out"), "participant", "--scale", "2",
            "--participant-label", "03", "--adapt", "0"]  # fmt: skip
    assert main([*args, "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(args) == 0  # a rerun: already done, said at INFO
    assert "already done" in capsys.readouterr().err
    assert main([*args, "-v"]) == 0  # -v: debug, with level and logger names
    assert "INFO metasrgan.bids: sub-03: already done" in capsys.readouterr().err


def test_subcommands_take_the_flags_too():
    args = _parser("data").parse_args(["stats", "samples", "-qq"])
    assert args.quiet == 2 and args.verbose == 0


def test_upscale_notes_go_through_logging(tmp_path, capsys):
    from metasrgan.samples_path import sample_path

    src = sample_path("mr_small_pydicom")  # 64 x 2.3 = 147.2: the command notes it
    args = ["upscale", str(src), "--scale", "2.3", "-o", str(tmp_path / "a.nii.gz"),
            "--no-progress", "--overwrite", "--adapt", "0"]  # fmt: skip
    assert main(args) == 0
    assert "note: mr_small_pydicom.nii.gz: axis 0" in capsys.readouterr().err
    assert main([*args, "-q"]) == 0
    assert "note:" not in capsys.readouterr().err
