"""Write the bad-input corpus: images, volumes and model files that must fail clearly.

    python scripts/make_bad_inputs.py FOLDER

Every file is small on disk (the 512 MiB gzip bomb is 0.5 MB; the 20000x20000 PNG and the
huge TIFF, JPEG, DICOM and .npy headers are under 1 kB); each case in :data:`IMAGE_CASES`
and :data:`MODEL_CASES` names the file and a regular expression the error message must
match, and ``expected.json`` in FOLDER repeats them.  The volumes are crops of the bundled
real MRI with one header field broken.  tests/test_bad_inputs.py runs this script into a
temporary folder.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

# file name -> what the reader's message must say
IMAGE_CASES: dict[str, str] = {
    "huge.png": r"20000x20000 = 400,000,000 voxels.*limit is",
    "bomb.nii.gz": r"1024x1024x512 = 536,870,912 voxels \(512\.0 MiB stored.*limit is",
    "huge.tif": r"100000x100000 = 10,000,000,000 voxels.*limit is",
    "huge.jpg": r"65535x65535 = 4,294,836,225 voxels.*limit is",
    "huge.npy": r"100000x100000 = 10,000,000,000 voxels.*limit is",
    "huge.dcm": r"60000x60000x1 = 3,600,000,000 voxels.*limit is",
    "dim9.nii": r"dim\[0\] = 9: dimension 9 is not allowed",
    "dim_zero.nii": r"dimension 2 has size 0",
    "dim_negative.nii": r"dimension 1 has size -5",
    "datatype.nii": r"datatype code 9999 is not a NIfTI data type",
    "rgb.nii": r"not a scalar intensity",
    "complex.nii": r"complex-valued",
    "vox_offset.nii": r"vox_offset 0 lies inside the header",
    "truncated.nii": r"truncated data: the header declares 7,264 bytes",
    "truncated.nii.gz": r"truncated",
    "plain_named_gz.nii.gz": r"named \.nii\.gz but not gzip-compressed",
    "gz_named_plain.nii": r"gzip-compressed but named \.nii",
    "short_header.nii": r"truncated header: 100 bytes",
    "empty.nii": r"truncated header: 0 bytes",
    "not_nifti.nii": r"not a NIfTI file \(the header size field",
    "pair_magic.nii": r"header/image pair",
    "pixdim_nan.nii": r"voxel size nan along axis 1 \(pixdim\[2\]\)",
    "pixdim_zero.nii": r"voxel size 0 along axis 0 \(pixdim\[1\]\)",
    "affine_singular.nii": r"affine is singular \(rank 2 of 3\)",
    "affine_zero.nii": r"affine is zero",
    "affine_nan.nii": r"affine has NaN or Inf",
    "five_d.nii": r"5D array .* not allowed",
    "four_d.nii.gz": r"4D volume",
    "nan_voxels.nii": r"voxels are NaN or Inf",
    "constant.nii.gz": r"the image is constant",
    "truncated.png": r"truncated",
    "garbage.png": r"not PNG, TIFF or JPEG",
    "truncated.npy": r"truncated data",
    "object.npy": r"numeric array is needed",
    "folder.nii.gz": r"is a folder, not a file",
    "notes.txt": r"unsupported file type '\.txt'",
    "fifo.nii.gz": r"not a regular file \(a FIFO\)",
}

# file name -> what load_model's message must say
MODEL_CASES: dict[str, str] = {
    "pickle.safetensors": r"a PyTorch pickle .* never unpickles",
    "garbage.safetensors": r"not a readable safetensors file",
    "truncated.safetensors": r"truncated",
    "huge_arg.safetensors": r"features=100000 exceeds 1024",
    "huge_params.safetensors": r"would have [\d,]+ parameters; the limit is",
    "unknown_arg.safetensors": r"has no argument 'bogus'",
    "unknown_model.safetensors": r"unknown model 'nope'",
    "wrong_type.safetensors": r"features='64' should be int",
    "missing_tensor.safetensors": r"missing tensor\(s\) head\.weight",
    "wrong_shape.safetensors": r"tensor head\.weight has shape \(4, 1, 3, 3\) but the model needs",
    "extra_tensor.safetensors": r"unexpected tensor\(s\) stowaway",
    "nan_weights.safetensors": r"tensor .* holds NaN or Inf",
    "int_weights.safetensors": r"tensor head\.weight is torch\.int32 but the model needs",
    "bad_json.safetensors": r"not valid JSON",
    "no_spec.safetensors": r"no model spec in its header",
}

SMALL_MODEL = {"name": "meta-srgan", "args": {"features": 4, "blocks": 1, "norm": "none"}}


# ---------------------------------------------------------------------------- volumes


def real_crop(shape=(24, 24, 6)) -> np.ndarray:
    """int16 crop of the bundled MNI152 slab (real anatomy)."""
    import nibabel as nib

    from metasrgan.samples_path import sample_path

    data = np.asarray(nib.load(sample_path("mni152_val")).dataobj)
    x, y, z = shape
    return np.ascontiguousarray(data[60 : 60 + x, 70 : 70 + y, :z]).astype(np.int16)


def nifti_bytes(array: np.ndarray | None = None, **fields) -> bytearray:
    """A NIfTI-1 file of a real crop, with raw header ``fields`` overwritten (by offset)."""
    import nibabel as nib

    array = real_crop() if array is None else array
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    img = nib.Nifti1Image(array, affine)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    raw = bytearray(img.to_bytes())
    offsets = {"dim": (40, "8h"), "datatype": (70, "h"), "bitpix": (72, "h"),
               "pixdim": (76, "8f"), "vox_offset": (108, "f"), "qform_code": (252, "h"),
               "sform_code": (254, "h"), "srow_x": (280, "4f"), "srow_y": (296, "4f"),
               "srow_z": (312, "4f"), "magic": (344, "4s")}  # fmt: skip
    for name, value in fields.items():
        offset, fmt = offsets[name]
        values = value if isinstance(value, (tuple, list)) else (value,)
        struct.pack_into("<" + fmt, raw, offset, *values)
    return raw


def _gzip_bomb(path: Path) -> None:
    """1024x1024x512 uint8 zeros: 512 MiB inflated, about 0.5 MB on disk (many gzip members
    of 1 MiB each, which every gzip reader concatenates)."""
    shape = (1024, 1024, 512)
    header = nifti_bytes(np.zeros((2, 2, 2), np.uint8), dim=(3, *shape, 1, 1, 1, 1))
    member = gzip.compress(b"\0" * (1 << 20), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(bytes(header[:352])))
        for _ in range(512):
            f.write(member)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png(path: Path) -> None:
    """The header of a 20000x20000 8-bit gray PNG, with one row of pixel data."""
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 20001)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )  # fmt: skip


def _huge_tiff(path: Path) -> None:
    """A 100000x100000 8-bit gray TIFF header (one IFD) with 16 bytes of pixels."""
    w = h = 100000
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, h), (279, 4, 1, 16)]  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\0" * 16)


def _huge_jpeg(path: Path) -> None:
    """A baseline JPEG's frame header declaring 65535x65535 gray pixels, and no image."""
    sof = struct.pack(">BHHB", 8, 65535, 65535, 1) + bytes([1, 0x11, 0])
    sos = struct.pack(">H", 8) + bytes([1, 1, 0, 0, 63, 0])
    path.write_bytes(
        b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xda" + sos
        + b"\0" * 10 + b"\xff\xd9"
    )  # fmt: skip


def _huge_npy(path: Path) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}
        )


def _object_npy(path: Path) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|O", "fortran_order": False, "shape": (2, 2)}
        )
        f.write(b"\0" * 64)


def _huge_dicom(path: Path) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), "MR"
    ds.Rows = ds.Columns = 60000
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\0" * 128  # far less than the header declares
    ds.save_as(str(path), enforce_file_format=True)


def make_images(folder: Path) -> None:
    good = nifti_bytes()
    n = len(good)
    gz = gzip.compress(bytes(good))
    singular = {"sform_code": 1, "srow_z": (1.0, 1.0, 0.0, 0.0), "srow_y": (1.0, 1.0, 0.0, 0.0)}
    files: dict[str, bytes | bytearray] = {
        "dim9.nii": nifti_bytes(dim=(9, 24, 24, 6, 1, 1, 1, 1)),
        "dim_zero.nii": nifti_bytes(dim=(3, 24, 0, 6, 1, 1, 1, 1)),
        "dim_negative.nii": nifti_bytes(dim=(3, -5, 24, 6, 1, 1, 1, 1)),
        "datatype.nii": nifti_bytes(datatype=9999),
        "rgb.nii": nifti_bytes(datatype=128, bitpix=24),
        "complex.nii": nifti_bytes(datatype=32, bitpix=64),
        "vox_offset.nii": nifti_bytes(vox_offset=0.0),
        "truncated.nii": good[: n - 100],
        "truncated.nii.gz": gz[: len(gz) // 2],
        "plain_named_gz.nii.gz": good,
        "gz_named_plain.nii": gz,
        "short_header.nii": good[:100],
        "empty.nii": b"",
        "not_nifti.nii": b"this is a text file, not a scan\n" * 20,
        "pair_magic.nii": nifti_bytes(magic=b"ni1\0"),
        "pixdim_nan.nii": nifti_bytes(
            pixdim=(1, 1, float("nan"), 2, 1, 1, 1, 1), sform_code=0, qform_code=0
        ),
        "pixdim_zero.nii": nifti_bytes(pixdim=(1, 0, 1, 2, 1, 1, 1, 1)),
        "affine_singular.nii": nifti_bytes(**singular),
        "affine_zero.nii": nifti_bytes(
            sform_code=1, srow_x=(0.0,) * 4, srow_y=(0.0,) * 4, srow_z=(0.0,) * 4
        ),
        "affine_nan.nii": nifti_bytes(srow_x=(float("nan"), 0.0, 0.0, 0.0)),
        "five_d.nii": nifti_bytes(np.stack([np.stack([real_crop()] * 2, -1)] * 2, -1)),
        "nan_voxels.nii": nifti_bytes(np.where(real_crop() > 50, np.nan, 1.0).astype(np.float32)),
        "constant.nii.gz": gzip.compress(bytes(nifti_bytes(np.zeros((8, 8, 4), np.int16)))),
        "four_d.nii.gz": gzip.compress(bytes(nifti_bytes(np.stack([real_crop()] * 2, -1)))),
        "garbage.png": b"GIF89a, or anything but a PNG" * 4,
        "notes.txt": b"hello\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(bytes(data))
    _gzip_bomb(folder / "bomb.nii.gz")
    _huge_png(folder / "huge.png")
    _huge_tiff(folder / "huge.tif")
    _huge_jpeg(folder / "huge.jpg")
    _huge_npy(folder / "huge.npy")
    _object_npy(folder / "object.npy")
    _huge_dicom(folder / "huge.dcm")
    from PIL import Image

    pixels = (real_crop()[:, :, 3].astype(np.float64) * 255 / real_crop().max()).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "truncated.png")
    (folder / "truncated.png").write_bytes((folder / "truncated.png").read_bytes()[:-60])
    np.save(folder / "truncated.npy", real_crop().astype(np.float32))
    (folder / "truncated.npy").write_bytes((folder / "truncated.npy").read_bytes()[:-200])
    (folder / "folder.nii.gz").mkdir(exist_ok=True)
    if not (folder / "fifo.nii.gz").exists():
        os.mkfifo(folder / "fifo.nii.gz")


# ---------------------------------------------------------------------------- model files


def _save(path: Path, tensors: dict, spec=None, header: dict | None = None) -> None:
    from safetensors.torch import save_file

    meta = header if header is not None else {
        "metasrgan": json.dumps({"format": "metasrgan-model/1", "model": spec or SMALL_MODEL})
    }  # fmt: skip
    save_file(tensors, str(path), metadata=meta)


def make_models(folder: Path) -> None:
    import torch

    from metasrgan.registry import make

    model = make(SMALL_MODEL)
    good = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    first = next(k for k in good if k.endswith("weight"))
    torch.save(good, folder / "pickle.safetensors")
    (folder / "garbage.safetensors").write_bytes(b"\x00garbage" * 10)
    _save(folder / "truncated.safetensors", good)
    data = (folder / "truncated.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) - 500])
    huge = {"name": "meta-srgan", "args": {"features": 100000}}
    _save(folder / "huge_arg.safetensors", {"x": torch.zeros(1)}, huge)
    params = {"name": "edsr", "args": {"features": 1024, "blocks": 64}}
    _save(folder / "huge_params.safetensors", {"x": torch.zeros(1)}, params)
    _save(folder / "unknown_arg.safetensors", good, {"name": "meta-srgan", "args": {"bogus": 1}})
    _save(folder / "unknown_model.safetensors", good, {"name": "nope", "args": {}})
    wrong_type = {"name": "meta-srgan", "args": {"features": "64"}}
    _save(folder / "wrong_type.safetensors", good, wrong_type)
    # the patterns say "head.weight" for the model's first weight: see expected_messages
    (folder / "names.json").write_text(json.dumps({"first": first}))
    _save(folder / "missing_tensor.safetensors", {k: v for k, v in good.items() if k != first})
    wrong = dict(good)
    wrong[first] = torch.zeros(4, 1, 3, 3)
    _save(folder / "wrong_shape.safetensors", wrong)
    _save(folder / "extra_tensor.safetensors", {**good, "stowaway": torch.zeros(2)})
    nan = dict(good)
    nan[first] = torch.full_like(good[first], float("nan"))
    _save(folder / "nan_weights.safetensors", nan)
    ints = dict(good)
    ints[first] = good[first].to(torch.int32)  # would be cast silently by load_state_dict
    _save(folder / "int_weights.safetensors", ints)
    _save(folder / "bad_json.safetensors", good, header={"metasrgan": "{not json"})
    _save(folder / "no_spec.safetensors", good, header={})


def expected_messages(folder: Path) -> dict[str, str]:
    """The cases with the model's real first tensor name put into the patterns."""
    first = json.loads((folder / "names.json").read_text())["first"]
    cases = {**IMAGE_CASES, **MODEL_CASES}
    return {k: v.replace("head\\.weight", first.replace(".", "\\.")) for k, v in cases.items()}


def make_corpus(folder: str | os.PathLike) -> dict[str, str]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    make_images(folder)
    make_models(folder)
    expected = expected_messages(folder)
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    return expected


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cases = make_corpus(sys.argv[1])
    print(f"wrote {len(cases)} bad inputs into {sys.argv[1]}")
