"""Per-class matte softness: class name -> temperature (docs/editing.md#softness).

A softness `t >= 0` is a temperature on the soft segment scores at a border: 0 makes the matte
hard (a one-hot of the winning segment), 1 keeps the model's own probabilities, larger values
blend over a wider band. Where two segments meet, the softer of the two decides (a person
against the road is blended as a person, the road against the sky stays crisp).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

# Crisp: large, flat surfaces whose borders an editor wants sharp (antialiased, not blended).
_CRISP = (
    "road", "sidewalk", "building", "sky", "wall", "floor", "ceiling", "ground", "path",
    "crosswalk", "house", "bridge", "tower", "rail",
)
# Soft: hair, fur, foliage, fabric -- borders that blend.
_SOFT = (
    "person", "rider", "vegetation", "tree", "grass", "flower", "other plant", "terrain", "cat",
    "dog", "horse", "cattle", "other animal", "textiles", "clothes", "curtain",
)
CRISP_SOFTNESS = 0.25  # A one-or-two-pixel antialiased edge; 0 would be binary.
SOFT_SOFTNESS = 1.0
OTHER_SOFTNESS = 0.5  # Cars, poles, signs, furniture, ... and void.
VOID_NAME = "void"


def normalize_name(name: str) -> str:
    """Case-, space-, underscore- and hyphen-insensitive class name ("Traffic_light")."""
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


DEFAULT_SOFTNESS: dict[str, float] = {
    **{normalize_name(n): CRISP_SOFTNESS for n in _CRISP},
    **{normalize_name(n): SOFT_SOFTNESS for n in _SOFT},
}


def parse_softness(spec: str) -> dict[str, float]:
    """Parses `"person=1.5,car=0.5"` (the `--softness` flag) into {class name: softness}.

    Raises:
      ValueError: an item without `=`, an empty name, or a value that is not a finite number
        >= 0.
    """
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, eq, value = item.rpartition("=")
        if not eq or not name.strip():
            raise ValueError(f"--softness item {item!r} is not CLASS=VALUE (e.g. person=1.5)")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"--softness {name.strip()}: {value!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"--softness {name.strip()}: softness must be >= 0, got {value}")
        out[name.strip()] = v
    return out


def softness_table(
    class_names: Sequence[str], overrides: Mapping[str, float] | None = None
) -> np.ndarray:
    """float32 [num_classes + 1]: the softness of each class id, void last.

    Args:
      class_names: the dataset's class names, indexed by class id.
      overrides: {class name: softness} replacing the defaults; names match
        `normalize_name`-insensitively; "void" sets the void softness.

    Raises:
      ValueError: an override names no class of the dataset, or a negative / non-finite value.
    """
    known = {normalize_name(n): i for i, n in enumerate(class_names)}
    table = np.array(
        [DEFAULT_SOFTNESS.get(normalize_name(n), OTHER_SOFTNESS) for n in class_names]
        + [OTHER_SOFTNESS],
        np.float32,
    )
    for name, value in (overrides or {}).items():
        key = normalize_name(name)
        if key == VOID_NAME:
            index = len(class_names)
        elif key in known:
            index = known[key]
        else:
            raise ValueError(
                f"softness for unknown class {name!r}; classes are {list(class_names)} and "
                f"{VOID_NAME!r}"
            )
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"softness of {name!r} must be a finite number >= 0, got {value}")
        table[index] = value
    return table
