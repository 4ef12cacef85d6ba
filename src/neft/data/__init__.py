"""Data sets read offline into memory (docs/method.md, 'Data sets'). May import: :mod:`neft.common`.

- :mod:`~neft.data.datasets`: the standard data sets in their distribution formats, :class:`ImageDataset` and
  :func:`load`;
- :mod:`~neft.data.own`: data sets of your own (``folder:PATH``, ``npz:FILE``).
"""

from neft.data.datasets import DATASETS, DatasetNotFoundError, ImageDataset, canonical_name, load

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataset", "canonical_name", "load"]
