"""Data sets read offline into memory (docs/method.md, 'Data sets'). May import: :mod:`neft.common`.

- :mod:`~neft.data.datasets`: :class:`ImageDataset`, the data sets' preprocessing, :func:`load`,
  :func:`with_test_subset` and :func:`check_classes` (a run's classes against the data set's now);
- :mod:`~neft.data.formats`: the standard data sets' files, where they are looked for and how each distribution
  format is read;
- :mod:`~neft.data.own`: data sets of your own (``folder:PATH``, ``npz:FILE``);
- :mod:`~neft.data.pixels`: images of any bit depth kept in their own range;
- :mod:`~neft.data.normalisation`: the input normalisation stated for weights trained elsewhere.
"""

from neft.data.datasets import DATASETS, ImageDataset, canonical_name, check_classes, load, with_test_subset
from neft.data.formats import DatasetNotFoundError

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageDataset", "canonical_name", "check_classes", "load",
           "with_test_subset"]
