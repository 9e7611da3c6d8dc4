"""Converters from other frameworks' checkpoints to vipdl parameters (docs/architecture.md#backbones)."""
