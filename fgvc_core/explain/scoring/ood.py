"""Out-of-distribution honesty: is an image unlike what a classifier was tested on?

The score is the max-softmax probability (Hendrycks & Gimpel, 2017): a classifier is usually less sure of an image
from outside its classes. The threshold is a low quantile (default the 5th percentile) of the max-softmax of every
image of the checkpoint's own held-out data, so about 5 % of that data would be flagged too: a warning, not a proof.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fgvc_core.errors import ConfigError

CALIBRATION_QUANTILE = 0.05


def calibrate_threshold(max_softmax: Sequence[float] | np.ndarray, quantile: float = CALIBRATION_QUANTILE) -> float:
    """The ``quantile`` of held-out max-softmax values (linear interpolation between order statistics).

    Raises:
        ConfigError: no values, a non-finite value, or a quantile outside (0, 1).
    """
    values = np.asarray(max_softmax, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ConfigError("no held-out images to calibrate the out-of-distribution threshold on")
    if not np.isfinite(values).all():
        raise ConfigError("a held-out max-softmax value is not finite")
    if not 0.0 < quantile < 1.0:
        raise ConfigError(f"the calibration quantile must be in (0, 1), got {quantile!r}")
    return float(np.quantile(values, quantile))


def is_unfamiliar(probabilities: Sequence[float] | np.ndarray, threshold: float) -> bool:
    """Whether an image's max-softmax (of its ``(K,)`` probabilities) lies below the calibrated threshold."""
    return float(np.max(np.asarray(probabilities, dtype=np.float64))) < float(threshold)


def unfamiliar_message(num_classes: int, dataset: str) -> str:
    """The warning the app shows on such an image (the issue's wording)."""
    return f"This model knows only these {num_classes} classes of {dataset}; this prediction is likely meaningless."
