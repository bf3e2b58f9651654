"""YAML as config writers expect it: ``5e-5`` is a number.

PyYAML follows YAML 1.1, whose float pattern needs a dot (``5.0e-5``), so ``lr: 5e-5`` or
``--set optim.lr=5e-5`` used to arrive as the string ``'5e-5'``.  YAML 1.2 and JSON read it as a
float; this safe loader adds that one rule and changes nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    pass


_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2's exponent floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
