"""Scans as the viewer shows them: read once, oriented, intensity-mapped, sliced on demand.

A volume is reoriented to RAS so that every scan's sagittal, coronal and axial slices look
the same way round (superior and anterior up, the subject's left on the left: neurological
convention).  The spacing and the affine are reordered with the data, so each displayed
axis knows its voxel size in mm and its orientation letters.  The intensity map is fitted on
the whole volume once, so neighbouring slices share one window.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metasrgan.data.io import SUPPORTED_SUFFIXES as SUFFIXES
from metasrgan.data.io import ImageTooLargeError, read_image
from metasrgan.geometry import check_affine, spacing_of, stack_of_slices
from metasrgan.intensity import IntensityMap
from metasrgan.samples_path import SAMPLES, sample_path

__all__ = [
    "SUFFIXES",
    "ScanError",
    "ScanTooLarge",
    "Volume",
    "load_sample",
    "load_volume",
    "sample_names",
]

AXIS_NAMES = ("sagittal", "coronal", "axial")
MAX_SLICE_SIDE = 1024
"""Larger slices are refused: at x4 they would make images of 16 million pixels."""


# For each view: the RAS axis of its rows (top to bottom) and of its columns (left to right),
# with the letters at the top/bottom and left/right edges.  The slice is ``rot90`` of the
# plane, so rows run along the second in-plane axis reversed, columns along the first.
def _labels(top: str, bottom: str, left: str, right: str) -> dict[str, str]:
    return {"top": top, "bottom": bottom, "left": left, "right": right}


VIEW_AXES = {
    "sagittal": {"rows": 2, "cols": 1, "labels": _labels("S", "I", "P", "A")},
    "coronal": {"rows": 2, "cols": 0, "labels": _labels("S", "I", "L", "R")},
    "axial": {"rows": 1, "cols": 0, "labels": _labels("A", "P", "L", "R")},
}
VOXELS_HINT = "(metasrgan serve --max-voxels N views larger scans)"
PLAIN_LABELS = {"top": "", "bottom": "", "left": "", "right": ""}


class ScanError(ValueError):
    """A file the viewer cannot show, with a message meant for the page."""


class ScanTooLarge(ScanError):
    """A file whose header declares more voxels than the viewer decodes (nothing decoded)."""


@dataclass
class Volume:
    """A scan held for viewing: RAS-oriented data in its own units plus its intensity map.

    ``affine`` maps RAS-ordered voxel indices to mm (None for plain images) and ``spacing``
    is the voxel size along each axis of ``data``, in the same order.
    """

    id: str
    name: str
    data: np.ndarray  # 3D (x, y, z) in RAS, or 2D (rows, cols) for a plain image
    intensity: IntensityMap
    spacing: tuple[float, ...]
    source: str  # "sample" or "upload"
    affine: np.ndarray | None = None
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

    def check(self, axis: str, index: int) -> None:
        counts = self.slice_counts()
        if axis not in counts:
            raise ScanError(f"axis must be one of {', '.join(counts)}, got {axis!r}")
        if not 0 <= index < counts[axis]:
            raise ScanError(f"{axis} slice {index} is out of range 0-{counts[axis] - 1}")

    def slice(self, axis: str, index: int) -> np.ndarray:
        """One 2D slice in display orientation (rows top to bottom), in the scan's units."""
        self.check(axis, index)
        if self.is_2d:
            return self.data
        plane = stack_of_slices(self.data, AXIS_NAMES.index(axis))[index]
        return np.ascontiguousarray(np.rot90(plane))

    def slice_shape(self, axis: str) -> tuple[int, int]:
        if self.is_2d:
            return tuple(self.data.shape)
        view = VIEW_AXES[axis]
        return (int(self.data.shape[view["rows"]]), int(self.data.shape[view["cols"]]))

    def unit_slice(self, axis: str, index: int) -> np.ndarray:
        """The slice mapped to [0, 1] with the volume's intensity map (the model's input)."""
        return self.intensity.apply(self.slice(axis, index))

    def view_spacing(self, axis: str) -> tuple[float, float]:
        """Voxel size (mm) of a displayed slice: (between rows, between columns)."""
        if self.is_2d:
            return (float(self.spacing[0]), float(self.spacing[1]))
        view = VIEW_AXES[axis]
        return (float(self.spacing[view["rows"]]), float(self.spacing[view["cols"]]))

    def describe(self) -> dict:
        axis, index = self.default_view()
        views = {}
        for name in self.slice_counts():
            views[name] = {
                "shape": list(self.slice_shape(name)),
                "spacing": [round(s, 4) for s in self.view_spacing(name)],
                "labels": PLAIN_LABELS if self.affine is None else VIEW_AXES[name]["labels"],
            }
        return {
            "id": self.id,
            "name": self.name,
            "source": self.source,
            "shape": list(self.data.shape),
            "spacing": [round(float(s), 4) for s in self.spacing],
            "slices": self.slice_counts(),
            "slice_shapes": {name: v["shape"] for name, v in views.items()},
            "views": views,
            "default": {"axis": axis, "index": index},
            "intensity": {"low": self.intensity.low, "high": self.intensity.high},
            "notes": self.notes,
        }


def sample_names() -> list[str]:
    """The bundled scans, by name (``colin27_val``...)."""
    return sorted(n for n in SAMPLES if sample_path(n).is_file())


def load_sample(name: str) -> Volume:
    if name not in sample_names():
        raise ScanError(f"no bundled sample named {name!r}; available: {', '.join(sample_names())}")
    return load_volume(Path(sample_path(name)), vol_id=f"sample-{name}", name=name, source="sample")


def load_volume(
    path: Path,
    vol_id: str | None = None,
    name: str | None = None,
    source: str = "upload",
    max_voxels: int | None = None,
) -> Volume:
    """Read a NIfTI, PNG, TIFF, DICOM or ``.npy`` file into a :class:`Volume`.

    Raises :class:`ScanError` naming the user's file (never the server's temporary copy).
    """
    name = name or path.name
    try:
        image = read_image(path, allow_4d=True, max_voxels=max_voxels)
    except ValueError as err:
        detail = str(err).replace(f"{path}: ", "").replace(str(path), name)
        if isinstance(err, ImageTooLargeError):  # the viewer's own option, not the variable
            detail = re.sub(r"\(set \$METASRGAN_MAX_VOXELS[^)]*\)", VOXELS_HINT, detail)
            raise ScanTooLarge(f"{name}: {detail}") from None
        raise ScanError(f"{name}: {detail}") from None
    data = np.asarray(image.array, dtype=np.float32)
    affine = image.affine if data.ndim >= 3 else None
    notes: list[str] = []
    if data.ndim == 4:
        notes.append(f"4D scan with {data.shape[3]} volumes: showing the first")
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise ScanError(f"{name}: expected a 2D image or a 3D volume, got shape {data.shape}")
    spacing = tuple(float(s) for s in image.spacing[: data.ndim])
    if affine is not None:
        try:
            check_affine(affine)
        except ValueError as err:
            raise ScanError(f"{name}: {err}") from None
        data, affine = _to_ras(data, np.asarray(affine, dtype=np.float64))
        spacing = spacing_of(affine)
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ScanError(f"{name}: broken header: voxel sizes {spacing} are not positive numbers")
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
        raise ScanError(f"{name}: {err}") from None
    vol_id = vol_id or "upload-" + hashlib.sha1(data.tobytes()).hexdigest()[:12]
    return Volume(vol_id, name, data, intensity, spacing, source, affine, notes)


def _to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Data reordered and flipped to the closest RAS axes, with the matching affine."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    ras = np.ascontiguousarray(nib.orientations.apply_orientation(data, ornt))
    return ras, affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
