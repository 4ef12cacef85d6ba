"""How a run is kept on disk: checkpoints (:mod:`~neft.store.checkpoint`, docs/results.md) and the one-writer lock
of a run directory (:mod:`~neft.store.lock`). May import: :mod:`neft.common`, :mod:`neft.models`."""

from neft.store.checkpoint import load, load_checkpoint

__all__ = ["load", "load_checkpoint"]
