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
