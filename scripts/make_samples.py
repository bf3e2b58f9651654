"""Write the bundled real-MRI samples (src/metasrgan/samples/) from the offline sources.

The validation slabs are held out of every training set: the data code excludes these axial
ranges, plus a guard band, from the volumes it trains on (see metasrgan.data.offline).  The
training slabs (``*_train``) are cut only from slices that split trains on (checked here).
Run: python scripts/make_samples.py [NAME...]  (needs the nilearn wheel and Debian's mricron-data).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from metasrgan.data.offline import (
    HELD_OUT_SLABS,
    TRAINING_SLABS,
    UNSEEN_SLABS,
    check_trainable,
    locate,
)

OUT = Path(__file__).resolve().parents[1] / "src" / "metasrgan" / "samples"


def write_slab(name: str, source: Path, z0: int, z1: int, dtype) -> None:
    img = nib.load(str(source))
    data = np.asanyarray(img.dataobj)[:, :, z0:z1]
    # crop x/y to the non-zero bounding box (+4 voxels) to keep the package small
    mask = data.max(axis=2) > 0
    ys, xs = np.nonzero(mask)
    x0, x1 = max(ys.min() - 4, 0), min(ys.max() + 5, data.shape[0])
    y0, y1 = max(xs.min() - 4, 0), min(xs.max() + 5, data.shape[1])
    data = data[x0:x1, y0:y1]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([x0, y0, z0]) + img.affine[:3, 3]
    out = nib.Nifti1Image(data.astype(dtype), affine)
    out.header.set_zooms(img.header.get_zooms()[:3])
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    path = OUT / f"{name}.nii.gz"
    nib.save(out, str(path))
    print(f"{path.name}: {data.shape} from {source.name} z {z0}:{z1}, {path.stat().st_size} bytes")


def write_package_scans() -> None:
    """Real scans of other kinds shipped inside installed packages (never trained on):
    a BOLD EPI volume from nibabel's test data (another contrast, noisy, 2 mm) and a clinical
    MR slice from pydicom's test data (another subject)."""
    import nibabel.tests
    import pydicom
    from pydicom.data import get_testdata_file

    epi = nib.load(str(Path(nibabel.tests.__file__).parent / "data" / "example4d.nii.gz"))
    first = np.asanyarray(epi.dataobj)[..., 0].astype(np.int16)
    out = nib.Nifti1Image(first, epi.affine)
    out.header.set_zooms(epi.header.get_zooms()[:3])
    out.set_qform(epi.affine, code=1)
    out.set_sform(epi.affine, code=1)
    nib.save(out, str(OUT / "epi_nibabel.nii.gz"))
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    pixels = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0)
    )
    dy, dx = (float(v) for v in ds.PixelSpacing)
    affine = np.diag([dy, dx, float(ds.SliceThickness), 1.0])
    mr = nib.Nifti1Image(pixels[:, :, None].astype(np.int16), affine)
    mr.set_qform(affine, code=1)
    mr.set_sform(affine, code=1)
    nib.save(mr, str(OUT / "mr_small_pydicom.nii.gz"))
    for name in ("epi_nibabel", "mr_small_pydicom"):
        print(f"{name}.nii.gz: {(OUT / (name + '.nii.gz')).stat().st_size} bytes")


def main(argv: list[str] | None = None) -> None:
    import argparse

    slabs = {**HELD_OUT_SLABS, **UNSEEN_SLABS, **TRAINING_SLABS}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"only these slabs ({', '.join(slabs)})")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for slab in TRAINING_SLABS.values():
        check_trainable(slab)
    for name, slab in slabs.items():
        if not args.names or name in args.names:
            write_slab(name, locate(slab.source), slab.z0, slab.z1, slab.dtype)
    if not args.names:
        write_package_scans()


if __name__ == "__main__":
    main()
