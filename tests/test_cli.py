import subprocess
import sys
import time

from metasrgan.cli import main


def test_help_is_instant_and_imports_no_torch():
    code = (
        "import sys; from metasrgan.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert time.perf_counter() - start < 10


def test_info_prints_the_paper_counts(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "561,926" in out and "565,768" in out and "40,720,385" in out


def test_unknown_command_fails(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_demo_runs_on_the_library_and_writes_its_figures_and_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--scales", "2,3", "--no-progress"]) == 0
    for name in ("fig7.png", "fig8.png", "table.md", "table.csv"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "table.md").read_text()
    assert "Meta-SRGAN" in table and "| 3 |" in table
    assert main(["demo", "-o", str(out), "--scales", "4.01"]) == 2
    assert "use 4 = 4/1" in capsys.readouterr().err


def _probe_command(monkeypatch, error: BaseException):
    """Register a command whose run() raises ``error``."""
    import types

    from metasrgan import cli

    probe = types.ModuleType("probe_command")
    probe.add_arguments = lambda parser: None

    def run(args):
        raise error

    probe.run = run
    monkeypatch.setitem(sys.modules, "probe_command", probe)
    monkeypatch.setitem(cli.COMMANDS, "probe", ("probe_command", "raises"))


def test_exit_codes_say_what_kind_of_failure_it_was(monkeypatch, capsys):
    class UsageError(ValueError):  # matched by name, like metasrgan.api's
        pass

    wrapped = ValueError("a library turned Ctrl+C into this")
    wrapped.__context__ = KeyboardInterrupt()
    cases = [
        (UsageError("--scale must be positive"), 2, "--scale must be positive"),
        (FileNotFoundError("in.nii.gz: no such file"), 2, "in.nii.gz: no such file"),
        (PermissionError("out.nii.gz: permission denied"), 1, "out.nii.gz: permission denied"),
        (KeyError("unknown model 'x'"), 2, "error: unknown model 'x'"),
        (wrapped, 130, "interrupted (SIGINT)"),
        (KeyboardInterrupt(), 130, "interrupted (SIGINT)"),
    ]
    for error, code, text in cases:
        _probe_command(monkeypatch, error)
        assert main(["probe"]) == code, error
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err


def test_main_restores_the_signal_handlers_it_installs():
    import signal

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert main(["info"]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_upscale_help_and_the_api_import_load_no_torch():
    code = (
        "import sys\nfrom metasrgan.cli import main\nimport metasrgan\n"
        "metasrgan.UsageError\ntry:\n    main(['upscale', '--help'])\nexcept SystemExit:\n"
        "    pass\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--max-voxels" in out.stdout and out.stdout.strip().endswith("False")
