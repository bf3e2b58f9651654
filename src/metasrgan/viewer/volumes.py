"""Scans as the viewer shows them: read once, oriented, intensity-mapped, sliced on demand.

A volume is reoriented to RAS so that every scan's sagittal, coronal and axial slices look
the same way round (superior and anterior up, the subject's right on the right).  The
intensity map is fitted on the whole volume once, so neighbouring slices share one window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from metasrgan.intensity import IntensityMap

AXIS_NAMES = ("sagittal", "coronal", "axial")
MAX_SLICE_SIDE = 1024
"""Larger slices are refused: at x4 they would make images of 16 million pixels."""
MAX_VOXELS = 256 * 1024 * 1024
try:
    from metasrgan.data.io import SUPPORTED_SUFFIXES as SUFFIXES
except ImportError:  # older installs: the fallback reader's formats
    SUFFIXES = (".nii", ".nii.gz", ".png")


class ScanError(ValueError):
    """A file the viewer cannot show, with a message meant for the page."""


@dataclass
class Volume:
    """A scan held for viewing: RAS-oriented data in its own units plus its intensity map."""

    id: str
    name: str
    data: np.ndarray  # 3D (x, y, z) in RAS, or 2D (rows, cols) for a plain image
    intensity: IntensityMap
    spacing: tuple[float, ...]
    source: str  # "sample" or "upload"
    notes: list[str] = field(default_factory=list)

    @property
    def is_2d(self) -> bool:
        return self.data.ndim == 2

    def slice_counts(self) -> dict[str, int]:
        if self.is_2d:
            return {"axial": 1}
        return {name: int(n) for name, n in zip(AXIS_NAMES, self.data.shape, strict=True)}

    def default_view(self) -> tuple[str, int]:
        """Axial (or, for a single axial slice, the axis with most slices), middle slice."""
        counts = self.slice_counts()
        axis = "axial" if counts["axial"] > 1 or self.is_2d else max(counts, key=counts.get)
        return axis, counts[axis] // 2

    def slice(self, axis: str, index: int) -> np.ndarray:
        """One 2D slice in display orientation (rows top to bottom), in the scan's units."""
        counts = self.slice_counts()
        if axis not in counts:
            raise ScanError(f"axis must be one of {', '.join(counts)}, got {axis!r}")
        if not 0 <= index < counts[axis]:
            raise ScanError(f"{axis} slice {index} is out of range 0-{counts[axis] - 1}")
        if self.is_2d:
            return self.data
        plane = np.take(self.data, index, axis=AXIS_NAMES.index(axis))
        return np.ascontiguousarray(np.rot90(plane))

    def unit_slice(self, axis: str, index: int) -> np.ndarray:
        """The slice mapped to [0, 1] with the volume's intensity map (the model's input)."""
        return self.intensity.apply(self.slice(axis, index))

    def describe(self) -> dict:
        axis, index = self.default_view()
        shapes = {}
        for name in self.slice_counts():
            shapes[name] = list(self.slice(name, 0).shape)
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "shape": list(self.data.shape),
            "spacing": [round(float(s), 4) for s in self.spacing],
            "slices": self.slice_counts(),
            "slice_shapes": shapes,
            "default": {"axis": axis, "index": index},
            "intensity": {"low": self.intensity.low, "high": self.intensity.high},
            "notes": self.notes,
        }


def sample_names() -> list[str]:
    """The bundled scans, by name (``colin27_val``...)."""
    folder = resources.files("metasrgan") / "samples"
    return sorted(p.name[: -len(".nii.gz")] for p in folder.iterdir() if p.name.endswith(".nii.gz"))


def load_sample(name: str) -> Volume:
    if name not in sample_names():
        raise ScanError(f"no bundled sample named {name!r}; available: {', '.join(sample_names())}")
    path = Path(str(resources.files("metasrgan") / "samples" / f"{name}.nii.gz"))
    return load_volume(path, vol_id=f"sample-{name}", name=name, source="sample")


def load_volume(path: Path, vol_id: str | None = None, name: str | None = None, source="upload"):
    """Read a NIfTI, PNG or DICOM file into a :class:`Volume`; :class:`ScanError` if unusable."""
    name = name or path.name
    try:
        data, affine, spacing, notes = _read(path)
    except ScanError:
        raise
    except Exception as err:  # any reader failure becomes one clear message for the page
        # name the user's file, not the temporary copy the server parsed
        detail = str(err).replace(f"{path}: ", "").replace(str(path), name)
        if not isinstance(err, ValueError):
            detail = f"could not read this file as an image ({type(err).__name__}: {detail})"
        raise ScanError(f"{name}: {detail}") from err
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        notes.append(f"4D scan with {data.shape[3]} volumes: showing the first")
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise ScanError(f"{name}: expected a 2D image or a 3D volume, got shape {data.shape}")
    if data.size > MAX_VOXELS:
        raise ScanError(f"{name}: {data.size:,} voxels is too large for the viewer")
    if data.ndim == 3 and affine is not None:
        data = _to_ras(data, affine)
    if max(data.shape) > MAX_SLICE_SIDE:
        raise ScanError(
            f"{name}: slices of up to {MAX_SLICE_SIDE} pixels a side can be viewed, got "
            f"{data.shape}; use `metasrgan upscale` for large images"
        )
    if min(data.shape[:2]) < 2:
        raise ScanError(f"{name}: the image is too small to view ({data.shape})")
    try:
        intensity = IntensityMap.fit(data)
    except ValueError as err:
        raise ScanError(f"{name}: {err}") from err
    vol_id = vol_id or "upload-" + hashlib.sha1(data.tobytes()).hexdigest()[:12]
    return Volume(vol_id, name, data, intensity, tuple(spacing), source, notes)


def _to_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    return np.ascontiguousarray(nib.orientations.apply_orientation(data, ornt))


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[float, ...], list[str]]:
    """Array, affine (None for plain images), spacing and notes, via the project's reader."""
    try:
        from metasrgan.data.io import read_image
    except ImportError:  # older installs: NIfTI and PNG only
        return _read_fallback(path)
    image = read_image(path, allow_4d=True)
    affine = image.affine if image.array.ndim >= 3 else None
    return image.array, affine, tuple(float(s) for s in image.spacing), []


def _read_fallback(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[float, ...], list]:
    """NIfTI with nibabel and PNG with Pillow, until :mod:`metasrgan.data.io` exists."""
    lower = path.name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
        return data, img.affine, tuple(float(z) for z in img.header.get_zooms()[:3]), []
    if lower.endswith(".png"):
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "I", "I;16", "F"):
                im = im.convert("L")
            data = np.asarray(im, dtype=np.float32)
        return data, None, (1.0, 1.0), []
    raise ScanError(f"{path.name}: unsupported file type; use NIfTI (.nii, .nii.gz) or PNG")
