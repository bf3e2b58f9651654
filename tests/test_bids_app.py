"""``metasrgan bids`` in-process on a BIDS dataset built from the bundled scans.

The derivatives it writes are checked against the issue's bar: every anatomical scan done,
the 4D BOLD skipped with a note, exit code 0, BIDS names and sidecars, headers kept, reruns
skipped, and pybids reads the result as a derivatives dataset.  (The npm validator's check
is in test_bids_validator.py.)
"""

from __future__ import annotations

import hashlib
import json
import logging

import nibabel as nib
import numpy as np
import pytest
from fixtures.bids import ANATOMICAL, BOLD, SIDECARS, TOP_LEVEL, make_bids_dataset

from metasrgan.cli import main
from metasrgan.inference import shipped_model_path


def _derivative(rel: str, res: str | None = None) -> str:
    folder, _, name = rel.rpartition("/")
    head, _, suffix = name.rpartition("_")
    entities = f"_res-{res}" if res else ""
    return f"{folder}/{head}{entities}_desc-superres_{suffix}"


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    """One run at x2 over the whole fixture (shared: it is the expensive part)."""
    root = tmp_path_factory.mktemp("bids")
    raw = make_bids_dataset(root / "raw")
    out = raw / "derivatives" / "metasrgan"
    handler = _Records()
    logging.getLogger("metasrgan").addHandler(handler)
    try:
        code = main(["bids", str(raw), str(out), "participant", "--scale", "2", "--adapt", "0"])
    finally:
        logging.getLogger("metasrgan").removeHandler(handler)
    return raw, out, code, handler.messages


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_every_anatomical_scan_is_done_and_bold_skipped_with_a_note(app_run):
    raw, out, code, messages = app_run
    assert code == 0
    for rel in ANATOMICAL:
        assert (out / _derivative(rel)).is_file(), rel
        assert (out / _derivative(rel).replace(".nii.gz", ".json")).is_file(), rel
    assert not list(out.rglob("*bold*"))
    assert any("skipped" in m and BOLD in m and "4D" in m for m in messages)


def test_dataset_description_is_a_derivative_with_model_and_hash(app_run):
    raw, out, _, _ = app_run
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    tool = desc["GeneratedBy"][0]
    assert tool["Name"] == "metasrgan" and tool["Version"]
    sha = hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()
    assert tool["Model"]["SHA256"] == sha and sha in tool["Description"]
    assert desc["DatasetLinks"]["raw"] == "../.."
    assert (out / desc["DatasetLinks"]["raw"]).resolve() == raw.resolve()


def test_sidecar_carries_raw_fields_sources_factors_and_model(app_run):
    raw, out, _, _ = app_run
    rel = "sub-01/anat/sub-01_T1w.nii.gz"
    side = json.loads((out / _derivative(rel).replace(".nii.gz", ".json")).read_text())
    for key, value in {**TOP_LEVEL["T1w.json"], **SIDECARS["sub-01/anat/sub-01_T1w.json"]}.items():
        if key != "ReconMatrixPE":  # no longer true of the new grid
            assert side[key] == value, key
    assert "ReconMatrixPE" not in side
    assert side["Sources"] == [f"bids:raw:{rel}"]
    sr = side["SuperResolution"]
    assert sr["Factors"] == ["2", "2", "1"]
    assert sr["InputShape"] == [48, 48, 6] and sr["OutputShape"] == [96, 96, 6]
    assert sr["Model"]["SHA256"] == hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()
    assert side["SkullStripped"] is False


def test_outputs_overlay_the_inputs_with_headers_kept(app_run):
    raw, out, _, _ = app_run
    for rel in ANATOMICAL:
        src, dst = nib.load(raw / rel), nib.load(out / _derivative(rel))
        assert dst.shape[:2] == tuple(2 * n for n in src.shape[:2])
        assert dst.shape[2:] == src.shape[2:]
        # the centre of the field of view is the same point in space
        c_src = src.affine @ np.r_[(np.array(src.shape[:3]) - 1) / 2, 1]
        c_dst = dst.affine @ np.r_[(np.array(dst.shape[:3]) - 1) / 2, 1]
        np.testing.assert_allclose(c_src, c_dst, atol=1e-4)
        assert int(dst.header["qform_code"]) == 1 and int(dst.header["sform_code"]) == 1
        assert dst.header.get_xyzt_units()[0] == "mm"
        assert b"metasrgan" in dst.header["descrip"].item()
        data = dst.get_fdata()
        assert dst.header["cal_max"] == pytest.approx(data.max(), rel=1e-5)


def test_pybids_reads_the_derivatives_dataset(app_run):
    from bids import BIDSLayout

    raw, out, _, _ = app_run
    layout = BIDSLayout(str(raw), validate=True, derivatives=str(out))
    found = layout.get(desc="superres", extension=".nii.gz", scope="derivatives",
                       return_type="filename")  # fmt: skip
    assert len(found) == len(ANATOMICAL)
    f = layout.get(subject="02", session="01", suffix="T2w", desc="superres",
                   extension=".nii.gz", scope="derivatives")[0]  # fmt: skip
    assert f.get_metadata()["EchoTime"] == 0.09


def test_rerun_skips_done_participants_and_overwrite_redoes(app_run, tmp_path):
    raw, out, _, _ = app_run
    target = out / _derivative(ANATOMICAL[0])
    before = target.stat().st_mtime_ns
    assert main(["bids", str(raw), str(out), "participant", "--scale", "2", "--adapt", "0",
                 "--participant-label", "01"]) == 0  # fmt: skip
    assert target.stat().st_mtime_ns == before
    # other settings on existing outputs: refused without --overwrite
    assert main(["bids", str(raw), str(out), "participant", "--scale", "2", "--adapt", "0",
                 "--dtype", "int16", "--participant-label", "01", "-qq"]) == 1  # fmt: skip
    assert target.stat().st_mtime_ns == before
    assert main(["bids", str(raw), str(out), "participant", "--scale", "2", "--adapt", "0",
                 "--participant-label", "sub-01", "--overwrite", "-q"]) == 0  # fmt: skip
    assert target.stat().st_mtime_ns != before
    assert nib.load(target).get_data_dtype() == np.float32


def test_labels_sessions_and_suffixes_select(tmp_path):
    raw = make_bids_dataset(tmp_path / "raw")
    out = tmp_path / "out"
    assert main(["bids", str(raw), str(out), "participant", "--scale", "1.5", "--adapt", "0",
                 "--participant-label", "02", "--session-label", "01", "--suffix", "T2w",
                 "--dtype", "int16"]) == 0  # fmt: skip
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert made == ["sub-02/ses-01/anat/sub-02_ses-01_desc-superres_T2w.nii.gz"]
    assert nib.load(out / made[0]).get_data_dtype() == np.int16


def test_unknown_participant_is_a_usage_error(tmp_path, capsys):
    raw = make_bids_dataset(tmp_path / "raw")
    code = main(["bids", str(raw), str(tmp_path / "out"), "participant", "--scale", "2",
                 "--participant-label", "99"])  # fmt: skip
    assert code == 2
    assert "99" in capsys.readouterr().err


def test_not_a_bids_dataset_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    code = main(["bids", str(tmp_path / "raw"), str(tmp_path / "out"), "participant",
                 "--scale", "2"])  # fmt: skip
    assert code == 2
    assert "not a BIDS dataset" in capsys.readouterr().err


def test_spacing_adds_res_entity_and_skips_scans_already_fine(tmp_path):
    raw = make_bids_dataset(tmp_path / "raw")
    out = tmp_path / "out"
    handler = _Records()
    logging.getLogger("metasrgan").addHandler(handler)
    try:
        assert main(["bids", str(raw), str(out), "participant", "--spacing", "0.5",
                     "--adapt", "0", "--participant-label", "01", "03"]) == 0  # fmt: skip
    finally:
        logging.getLogger("metasrgan").removeHandler(handler)
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    # the 0.3 mm clinical slice is already fine enough: skipped with a note
    assert made == [_derivative("sub-01/anat/sub-01_T1w.nii.gz", "0p5mm")]
    assert any("sub-03_T2w" in m and "already at --spacing 0.5" in m for m in handler.messages)
    side = json.loads((out / made[0].replace(".nii.gz", ".json")).read_text())
    assert "0.5" in side["Resolution"]
    np.testing.assert_allclose(nib.load(out / made[0]).header.get_zooms(), (0.5, 0.5, 0.5))


@pytest.mark.slow
def test_n_jobs_gives_the_same_outputs(app_run, tmp_path):
    raw, out, _, _ = app_run
    par = tmp_path / "parallel"
    assert main(["bids", str(raw), str(par), "participant", "--scale", "2", "--n-jobs", "2",
                 "--threads", "1", "--adapt", "0"]) == 0  # fmt: skip
    for rel in ANATOMICAL:
        a = nib.load(out / _derivative(rel)).get_fdata()
        b = nib.load(par / _derivative(rel)).get_fdata()
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
