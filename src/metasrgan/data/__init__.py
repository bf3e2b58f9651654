"""Readers, datasets, crops and degradations."""
