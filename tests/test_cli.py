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
