"""Reading a raw BIDS dataset: which scans belong to which participant, and their sidecars.

Uses pybids (``BIDSLayout``): it supports every Python this project does (bids2table needs
3.11+), validates file names with the official ``bids-validator`` rules while indexing, and
merges sidecars by the inheritance principle.  Subjects outside ``--participant-label`` are
left out of the index itself, so a cluster job for one participant does not index a whole
cohort.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class RawScan:
    """One NIfTI file of the raw dataset.

    Attributes:
        path: absolute path.
        relpath: POSIX path relative to the dataset root (what BIDS URIs name).
        subject, session: labels without their ``sub-``/``ses-`` prefixes (session may be None).
        suffix: ``T1w``, ``bold``...
        metadata: the sidecar fields that apply to it (inheritance principle applied).
    """

    path: Path
    relpath: str
    subject: str
    session: str | None
    suffix: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


def strip_prefix(label: str, prefix: str) -> str:
    """``sub-01`` -> ``01``: BIDS Apps take labels without prefixes, but accept them."""
    label = str(label).strip()
    return label[len(prefix) :] if label.startswith(prefix) else label


def _check_labels(labels: Sequence[str], what: str) -> list[str]:
    out = []
    for label in labels:
        if not re.fullmatch(r"[0-9a-zA-Z]+", label):
            raise ValueError(f"--{what}-label {label!r}: BIDS labels are letters and digits only")
        out.append(label)
    return out


def open_layout(bids_dir: Path, participants: Sequence[str] | None = None):
    """A validated ``BIDSLayout`` of ``bids_dir`` holding only ``participants`` (all if None)."""
    try:
        from bids import BIDSLayout, BIDSLayoutIndexer
        from bids.exceptions import BIDSValidationError
    except ImportError:
        raise ValueError(
            "the BIDS App needs pybids: pip install 'metasrgan[bids]' (or pybids)"
        ) from None

    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise FileNotFoundError(f"BIDS dataset not found: {bids_dir}")
    ignore = [re.compile(r"^/(code|derivatives|sourcedata|stimuli)(/|$)"), re.compile(r"/\.")]
    if participants:
        labels = "|".join(re.escape(p) for p in participants)
        ignore.append(re.compile(rf"^/sub-(?!(?:{labels})(?:/|$))"))
    try:
        return BIDSLayout(
            str(bids_dir),
            validate=True,
            derivatives=False,
            indexer=BIDSLayoutIndexer(validate=True, ignore=ignore),
        )
    except BIDSValidationError as err:
        raise ValueError(f"{bids_dir} is not a BIDS dataset: {err}") from None


def find_scans(
    bids_dir: Path,
    participants: Sequence[str] | None = None,
    sessions: Sequence[str] | None = None,
    suffixes: Sequence[str] | None = None,
) -> tuple[dict[str, list[RawScan]], dict[str, Any]]:
    """The NIfTI scans of each selected participant, and the dataset's description.

    Labels are given without prefixes (a ``sub-``/``ses-`` prefix is tolerated); a
    participant label the dataset does not have is an error, as BIDS Apps do.
    """
    participants = _check_labels(
        [strip_prefix(p, "sub-") for p in participants or []], "participant"
    )
    sessions = _check_labels([strip_prefix(s, "ses-") for s in sessions or []], "session")
    layout = open_layout(bids_dir, participants)
    present = sorted(layout.get_subjects())
    missing = sorted(set(participants) - set(present))
    if missing:
        raise ValueError(
            f"participant(s) {', '.join(missing)} not in {bids_dir} (it has: "
            f"{', '.join(present[:20]) or 'none'}{'...' if len(present) > 20 else ''})"
        )
    query: dict[str, Any] = {"extension": list(NIFTI_EXTENSIONS), "return_type": "object"}
    if sessions:
        query["session"] = sessions
    if suffixes:
        query["suffix"] = list(suffixes)
    by_subject: dict[str, list[RawScan]] = {s: [] for s in (participants or present)}
    root = Path(layout.root)
    for f in layout.get(**query):
        entities = f.get_entities()
        scan = RawScan(
            path=Path(f.path),
            relpath=Path(f.path).relative_to(root).as_posix(),
            subject=str(entities["subject"]),
            session=str(entities["session"]) if "session" in entities else None,
            suffix=str(entities.get("suffix", "")),
            metadata=dict(f.get_metadata()),
        )
        by_subject.setdefault(scan.subject, []).append(scan)
    for scans in by_subject.values():
        scans.sort(key=lambda s: s.relpath)
    return by_subject, dict(layout.description or {})
