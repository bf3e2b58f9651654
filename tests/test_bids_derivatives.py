"""Derivative names, BIDS URIs and dataset links (pure functions, no model)."""

from __future__ import annotations

import pytest

from metasrgan.bids.dataset import strip_prefix
from metasrgan.bids.derivatives import (
    bids_uri,
    derivative_relpath,
    raw_link,
    res_label,
    split_name,
)


@pytest.mark.parametrize(
    ("raw", "spacing", "expected"),
    [
        ("sub-01/anat/sub-01_T1w.nii.gz", None, "sub-01/anat/sub-01_desc-superres_T1w.nii.gz"),
        ("sub-01/anat/sub-01_T1w.nii.gz", 1.0,
         "sub-01/anat/sub-01_res-1mm_desc-superres_T1w.nii.gz"),
        # entities keep the schema's order: ses, acq, ce, rec, run ... res ... desc
        ("sub-01/ses-a/anat/sub-01_ses-a_acq-mprage_run-2_T1w.nii",
         0.75, "sub-01/ses-a/anat/sub-01_ses-a_acq-mprage_run-2_res-0p75mm_desc-superres_T1w.nii"),
        ("sub-01/anat/sub-01_rec-norm_echo-1_FLAIR.nii.gz", None,
         "sub-01/anat/sub-01_rec-norm_echo-1_desc-superres_FLAIR.nii.gz"),
        ("sub-01/anat/sub-01_desc-bc_T2w.nii.gz", None,
         "sub-01/anat/sub-01_desc-bcsuperres_T2w.nii.gz"),
    ],
)  # fmt: skip
def test_derivative_names(raw, spacing, expected):
    assert derivative_relpath(raw, spacing) == expected


def test_res_labels_are_alphanumeric():
    assert res_label(1) == "1mm" and res_label(0.5) == "0p5mm" and res_label(1.25) == "1p25mm"


def test_split_name_refuses_non_bids_names():
    assert split_name("sub-01_T1w.nii.gz") == ([("sub", "01")], "T1w", ".nii.gz")
    with pytest.raises(ValueError, match="not a BIDS file name"):
        split_name("T1w.nii.gz")


def test_bids_uri_and_raw_link(tmp_path):
    assert bids_uri("sub-01/anat/sub-01_T1w.nii.gz") == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    raw = tmp_path / "raw"
    assert raw_link(raw, raw / "derivatives" / "metasrgan") == "../.."
    assert raw_link(raw, tmp_path / "elsewhere") == raw.resolve().as_uri()


def test_labels_without_prefixes():
    assert strip_prefix("sub-01", "sub-") == "01" and strip_prefix("01", "sub-") == "01"
