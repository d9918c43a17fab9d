"""FastEstimator 1.x's NumpyDataset, with ``split``."""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import numpy as np

from fe_dist.dataset import numpy_dataset
from fe_dist.errors import ConfigError


class NumpyDataset(numpy_dataset.NumpyDataset):
    """Samples from arrays sharing their first axis, with FastEstimator's ``split``.

    Args:
        data: {key: array}.
        name: What error messages call it.
    """

    def __init__(self, data: Mapping[str, Any], name: str = "NumpyDataset") -> None:
        super().__init__(data, name=name)

    def split(self, *fractions: float | int, seed: int | None = None) -> Any:
        """Move samples out of this dataset into new ones, one per fraction (FastEstimator's
        ``split``): a float in (0, 1) takes that fraction of the samples this dataset had, an
        int that many samples.

        The samples are drawn at random with ``seed``; None draws with seed 0, not a fresh
        seed as FastEstimator does, so every rank of a distributed job splits alike (ranks
        holding different splits would be refused before training, by the data fingerprint).

        Returns:
            One new dataset, or a list of them for several fractions.
        """
        n = len(self)
        counts = []
        for fraction in fractions:
            if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or \
                    fraction <= 0 or (isinstance(fraction, float) and fraction >= 1):
                raise ConfigError(f"{self.name}.split: each fraction must be a float in (0, 1) "
                                  f"or a positive int count, got {fraction!r}.")
            counts.append(int(round(fraction * n)) if isinstance(fraction, float)
                          else int(fraction))
        if sum(counts) >= n:
            raise ConfigError(f"{self.name}.split{fractions}: takes {sum(counts)} of its {n} "
                              "samples, leaving none.")
        order = np.random.default_rng(0 if seed is None else seed).permutation(n)
        parts, start = [], 0
        for count in counts:
            rows = np.sort(order[start:start + count])
            parts.append(NumpyDataset({k: v[rows] for k, v in self.data.items()}, self.name))
            start += count
        keep = np.sort(order[start:])
        self.data = {k: v[keep] for k, v in self.data.items()}
        self._tensors = None
        return parts[0] if len(parts) == 1 else parts
