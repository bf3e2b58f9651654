"""Interruptions at any moment: SIGINT/SIGTERM leave no partial output and no temporary
file, exit 130 with one short line; SIGKILL's leftovers are recognisable and cleaned by
the next write into the folder.  Signals are sent to real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from metasrgan.atomic import TEMP_SUFFIX, atomic_write, clean_stale, is_temp_name

# A child running one command through metasrgan.cli.main that writes three files with
# atomic_write and signals itself at the chosen moment of the first write.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, tempfile, types
    from pathlib import Path
    from metasrgan import atomic, cli

    moment, signame, folder = sys.argv[1:4]
    sig = getattr(signal, signame)

    def hit():
        os.kill(os.getpid(), sig)

    if moment == "mkstemp":
        real_mkstemp = tempfile.mkstemp
        def mkstemp(*args, **kwargs):
            made = real_mkstemp(*args, **kwargs)
            hit()
            return made
        atomic.tempfile.mkstemp = mkstemp
    if moment == "replace":
        real_replace = os.replace
        def replace(a, b):
            hit()
            return real_replace(a, b)
        atomic.os.replace = replace

    def write(tmp):
        Path(tmp).write_bytes(b"partial" * 100)
        if moment == "write":
            hit()
        if moment == "sleep":
            print("writing", flush=True)
            import time; time.sleep(60)
        Path(tmp).write_bytes(b"complete" * 100)

    def run(args):
        for i in range(3):
            atomic.atomic_write(Path(folder) / f"out{i}.nii.gz", write)
        if moment == "swallowed":  # a library that catches the Ctrl+C and carries on
            try:
                hit()
                for _ in range(10**6):
                    pass
            except KeyboardInterrupt:
                pass
        return 0

    probe = types.ModuleType("probe")
    probe.add_arguments = lambda parser: None
    probe.run = run
    sys.modules["probe"] = probe
    cli.COMMANDS["probe"] = ("probe", "writes three files")
    if moment == "import":  # Ctrl+C while the command's module (torch...) is imported
        import importlib
        real_import = importlib.import_module
        def slow_import(name, *args):
            hit()
            return real_import(name, *args)
        importlib.import_module = slow_import
    sys.exit(cli.main(["probe"]))
    """
)


def _child(tmp_path, moment, signame, **kwargs):
    return subprocess.run(
        [sys.executable, "-c", CHILD, moment, signame, str(tmp_path)],
        capture_output=True, text=True, timeout=60, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(
    "moment, signame",
    [("mkstemp", "SIGTERM"), ("write", "SIGTERM"), ("replace", "SIGTERM"), ("write", "SIGINT")],
)
def test_a_signal_during_an_atomic_write_leaves_nothing(tmp_path, moment, signame):
    done = _child(tmp_path, moment, signame)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == f"metasrgan: interrupted ({signame}); nothing partial was left"
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_ctrl_c_at_start_up_exits_130_with_one_line(tmp_path):
    done = _child(tmp_path, "import", "SIGINT")
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_swallowed_ctrl_c_still_does_not_exit_0(tmp_path):
    done = _child(tmp_path, "swallowed", "SIGINT")
    assert done.returncode == 130 and "interrupted" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{i}.nii.gz" for i in range(3)]


def test_ctrl_c_while_the_real_cli_imports_torch():
    """``metasrgan info`` spends its first second importing torch: a Ctrl+C then is an
    interruption, not a traceback."""
    child = subprocess.Popen(
        [sys.executable, "-m", "metasrgan.cli", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    maps = Path(f"/proc/{child.pid}/maps")
    deadline = time.time() + 30
    while time.time() < deadline and child.poll() is None:  # until torch's library is loading
        if not maps.exists() or "libtorch" in maps.read_text(errors="replace"):
            break
        time.sleep(0.01)
    time.sleep(0.05 if maps.exists() else 0.4)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, (out, err)
    assert "Traceback" not in err and "interrupted" in err


def test_sigkill_leaves_a_recognisable_temp_file_that_the_next_write_removes(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "sleep", "SIGTERM", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait(timeout=30)
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and is_temp_name(left[0].name) and left[0].name.endswith(TEMP_SUFFIX)
    assert left[0].name.startswith(".out0.nii.gz.")
    atomic_write(tmp_path / "next.txt", lambda tmp: Path(tmp).write_text("ok"))
    assert [p.name for p in tmp_path.iterdir()] == ["next.txt"]


def test_only_dead_processes_temp_files_are_stale(tmp_path):
    from metasrgan import atomic

    mine = tmp_path / f".a.nii.gz.{atomic._HOST}-{os.getpid()}-x1{TEMP_SUFFIX}"
    dead_pid = 2**22 + 12345  # above Linux's pid_max default: never a live process
    dead = tmp_path / f".b.nii.gz.{atomic._HOST}-{dead_pid}-x2{TEMP_SUFFIX}"
    elsewhere = tmp_path / f".c.nii.gz.abcdef-{dead_pid}-x3{TEMP_SUFFIX}"  # another machine
    old = tmp_path / f".d.nii.gz.abcdef-{dead_pid}-x4{TEMP_SUFFIX}"
    user = tmp_path / ".e.nii.gz.tmp"  # not ours: never touched
    folder = tmp_path / f".f.{atomic._HOST}-{dead_pid}-x5{TEMP_SUFFIX}"  # a data prepare
    for p in (mine, dead, elsewhere, old, user):
        p.write_bytes(b"x")
    folder.mkdir()
    (folder / "000000.npy").write_bytes(b"x")
    os.utime(old, (time.time() - 2 * atomic.STALE_AFTER_S,) * 2)
    removed = clean_stale(tmp_path)
    assert sorted(removed) == sorted([dead, old, folder])
    assert mine.exists() and elsewhere.exists() and user.exists()


def test_sigterm_during_data_prepare_leaves_no_partial_dataset(tmp_path):
    out = tmp_path / "prepared"
    child = subprocess.Popen(
        [sys.executable, "-m", "metasrgan.cli", "data", "prepare", "samples", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until it is writing slices into its temp folder
        temps = [p for p in tmp_path.iterdir() if is_temp_name(p.name)]
        if temps and len(list((temps[0] / "train").glob("*.npy"))) >= 3:
            break
        time.sleep(0.02)
    else:
        pytest.fail("data prepare never started writing")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
