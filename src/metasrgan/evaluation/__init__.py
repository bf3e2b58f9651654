"""Scale sweeps: PSNR/SSIM of every method, per degradation and scale, and their tables.

- :mod:`.protocol`: exact sizes, the degradation, the metric regions (read it first);
- :mod:`.inputs`: HR slices from samples, files, folders, BraTS;
- :mod:`.methods`: classical baselines and networks;
- :mod:`.run`: the loop;
- :mod:`.tables`: summaries, the gain over the best classical baseline, CSV and Markdown.
"""

from metasrgan.evaluation.inputs import EvalImage, load_images, slices_of
from metasrgan.evaluation.methods import (
    Method,
    adapted_method,
    bicubic_method,
    classical_method,
    classical_methods,
    ensembled_method,
    load_method,
    unique_labels,
)
from metasrgan.evaluation.protocol import (
    DATA_RANGE,
    REGION_TITLES,
    REGIONS,
    Prepared,
    exact_hr_window,
    exact_lr_shape,
    information_window,
    prepare,
    region_metrics,
    shift_window,
)
from metasrgan.evaluation.run import evaluate, parse_scales, upscale
from metasrgan.evaluation.tables import (
    best_classical,
    by_source,
    gains,
    scale_label,
    summarize,
    worst_cases,
    write_tables,
)

__all__ = [
    "DATA_RANGE",
    "REGIONS",
    "REGION_TITLES",
    "EvalImage",
    "Method",
    "Prepared",
    "adapted_method",
    "best_classical",
    "bicubic_method",
    "by_source",
    "classical_method",
    "classical_methods",
    "ensembled_method",
    "evaluate",
    "exact_hr_window",
    "exact_lr_shape",
    "gains",
    "information_window",
    "load_images",
    "load_method",
    "parse_scales",
    "prepare",
    "region_metrics",
    "scale_label",
    "shift_window",
    "slices_of",
    "summarize",
    "unique_labels",
    "upscale",
    "worst_cases",
    "write_tables",
]
