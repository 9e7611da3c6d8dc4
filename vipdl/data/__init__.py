"""Datasets: descriptors, label encodings, synthetic videos, converters and input pipelines."""
