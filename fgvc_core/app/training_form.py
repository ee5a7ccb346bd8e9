"""What the Tune page's training form becomes: the ``train.train`` overrides of its fields.

The form's numbers set the recipe's epochs and step cap; its per-epoch image count applies only to the synthetic
stream (the one dataset with a size per epoch); each free-text line is one more override, passed as typed, since
``training.start_training`` validates every override against its whitelist.
"""

from __future__ import annotations

from pathlib import Path

from fgvc_core.engine.config import load_config

SIZED_DATA = "synth_stream"  # the only data whose epoch size the form can set


def form_overrides(recipe: Path, epochs: int, max_steps: int, samples: int, extra: str) -> list[str]:
    """The overrides of one form submission, in the order ``train.train`` applies them.

    Args:
        recipe: the chosen YAML recipe (read to see whether its data has a size per epoch).
        epochs: ``train.epochs``.
        max_steps: ``train.max_steps`` (0: no limit).
        samples: ``data.train_samples``, used only when the recipe's data is ``synth_stream``.
        extra: more ``key=value`` overrides, one per line.
    """
    overrides = [f"train.epochs={int(epochs)}", f"train.max_steps={int(max_steps)}"]
    if load_config(recipe)["data"]["name"] == SIZED_DATA:
        overrides.append(f"data.train_samples={int(samples)}")
    return overrides + extra.splitlines()
