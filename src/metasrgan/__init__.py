"""metasrgan: arbitrary-scale super-resolution of brain MRI with one small network."""

__version__ = "0.1.0"
