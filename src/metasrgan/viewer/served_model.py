"""Which model the viewer serves and what its page says about it (an untrained model is
flagged on the page, never shown as if it were trained)."""

from __future__ import annotations

import os
import warnings

from torch import nn

from metasrgan.viewer import engine


def model_info(model: nn.Module, path: str | None, untrained: bool) -> dict:
    """What the page shows about the model (untrained models are flagged)."""
    from metasrgan.registry import count_parameters

    spec = (getattr(model, "metadata", None) or {}).get("model") or {}
    return {
        "name": spec.get("name", type(model).__name__) if isinstance(spec, dict) else str(spec),
        "path": path,
        "untrained": untrained,
        "parameters": count_parameters(model),
        "feature_cache": engine.supports_feature_cache(model),
        "skip": getattr(model, "skip", None),
        "acquisitions": list(engine.acquisitions_of(model)),
        "warning": (
            "UNTRAINED model: no trained model is installed, so the Meta-SRGAN images are "
            "meaningless. Train one or start the server with --model."
            if untrained
            else None
        ),
    }


def load_model(model_path: str | os.PathLike | None, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The model and what the page shows about it."""
    from metasrgan.inference import UntrainedModelWarning, load, shipped_model_path

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrainedModelWarning)
        model = load(model_path, device)
    untrained = any(issubclass(w.category, UntrainedModelWarning) for w in caught)
    untrained = untrained or bool((getattr(model, "metadata", None) or {}).get("untrained"))
    path = model_path or shipped_model_path()
    return model, model_info(model, str(path) if path else None, untrained)
