"""Data sets read offline into memory (docs/method.md, 'Data sets'). May import: :mod:`neft.common`.

- :mod:`~neft.data.datasets`: :class:`ImageDataset`, the data sets' preprocessing, and :func:`load`;
- :mod:`~neft.data.formats`: the standard data sets' files, where they are looked for and how each distribution
  format is read;
- :mod:`~neft.data.own`: data sets of your own (``folder:PATH``, ``npz:FILE``).
- :mod:`~neft.data.normalisation`: the input normalisation stated for weights trained elsewhere.
"""

from neft.data.datasets import DATASETS, ImageDataset, canonical_name, load
from neft.data.formats import DatasetNotFoundError

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataset", "canonical_name", "load"]
