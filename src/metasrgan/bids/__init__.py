"""A BIDS App: raw BIDS dataset in, BIDS derivatives dataset of super-resolved scans out.

- :mod:`metasrgan.bids.dataset` reads the raw dataset (pybids),
- :mod:`metasrgan.bids.derivatives` names outputs and writes ``dataset_description.json``,
- :mod:`metasrgan.bids.app` runs participants (``metasrgan bids``).
"""

from metasrgan.bids.app import AppSettings, ParticipantResult, run

__all__ = ["AppSettings", "ParticipantResult", "run"]
