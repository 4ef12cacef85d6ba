"""Chips drawn as the circuit's periphery maps them (docs/method.md, 'The periphery', 'Tiles of their own' and
'Drift compensation'): each tile programmed on its own, and the global drift compensation factor measured per
programmed unit and carried by the chip.

* **Per-tile mapping** (``tile_mapping="tile"``): every tile of a layer (row range of ``weight.flatten(1)``,
  :attr:`neft.chip.circuit_layer.CircuitLayer.tiles`) is a crossbar of its own: its conductances span the range
  relative to the tile's own max |W| (the reference of the programming noise, the quantization and, with
  ``drift_of = "resplit"``, the re-split), and it has its own drift compensation factor. aihwkit 1.2 runs each
  tile of a ``TileModuleArray`` (``aihwkit/simulator/tiles/array.py``) as an ``InferenceTile`` with its own
  ``PCMLikeNoiseModel`` conversion (``aihwkit/inference/noise/pcm.py``: ``g_max / max|W|`` of the tile's weights)
  and its own ``GlobalDriftCompensation`` (``aihwkit/simulator/tiles/inference.py``). ``"layer"`` (default): one
  reference and one factor per layer.
* **The compensation factor from the one draw**: ``alpha = readout(W_p) / readout(W_t)`` of the programmed and the
  read (drifted) weights of the same draw (:func:`neft.chip.effects.draw`), on the weights
  (:func:`neft.chip.effects.compensation`) or through the periphery (``compensation_readout="periphery"``, a hook
  of :func:`neft.chip.periphery.compensation_readout`). With ``drift_compensation_at="weights"`` the read weights
  are scaled by it; with ``"outputs"`` the chip keeps the read weights and carries ``alpha`` (0-d per layer, or
  ``[tiles]``) under :func:`neft.chip.compensation_placement.alpha_key`.

Random draws per layer, in model order: per programmed unit (the layer, or each tile in order) the device draws of
:func:`neft.chip.effects.draw` on that unit's weights, then, with the periphery readout, the readout's output noise
at t0 and at the read time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neft.chip import effects
from neft.chip.compensation_placement import alpha_key
from neft.chip.device_model import DeviceModel

__all__ = ["draw_chip", "cached_mapping"]


def draw_chip(model: DeviceModel, weights: dict[str, torch.Tensor], sigma: float, generator, censor_k,
              verified_scales: dict[str, torch.Tensor], hooks, columns: dict | None,
              mappings: dict) -> dict[str, torch.Tensor]:
    """One chip ``{name: dW}`` (and ``{alpha_key(name): alpha}`` with compensation on the outputs) of ``weights``
    drawn per programmed unit (module docstring).

    Args:
        model: the chip's device model.
        weights: ``{name: w}`` the chip is drawn for (divided by the column scales with per-column scaling).
        sigma, generator, censor_k: as :meth:`neft.chip.crossbar.Crossbar.sample_chip`.
        verified_scales: ``{name: per-weight factor on the programming std}`` of write-verified weights.
        hooks: the :class:`neft.chip.periphery_hooks.ChipHooks` in force.
        columns: ``{name: column scales}`` shaped like the weights (None: no per-column scaling); the periphery
            readout reads the weights in their own units (``w * scale``).
        mappings: the crossbar's cache of each unit's :func:`neft.chip.effects.map_layer`.

    Returns:
        ``dW`` detached, shaped like each weight, on its device; ``alpha`` 0-d per layer, ``[tiles]`` with
        ``tile_mapping="tile"``.
    """
    chip = {}
    with torch.no_grad():
        for name, weight in weights.items():
            tiles = hooks.tiles(name) if hooks.tiles is not None else None
            readout = None
            if hooks.readout is not None:
                scale = None if columns is None else columns[name].flatten(1)

                def readout(tile, block, r0, r1, name=name, scale=scale):
                    block = block if scale is None else block * scale[:, r0:r1].reshape(block.shape)
                    return hooks.readout(name, tile, block.flatten(1), generator,
                                         model.drift_compensation_input == "one-hot")
            unit = _LayerDraw(model, weight, sigma, generator, censor_k, verified_scales.get(name),
                              mappings, name)
            dW, alpha = unit.run(tiles, readout, hooks.compensate_outputs)
            chip[name] = dW
            if alpha is not None:
                chip[alpha_key(name)] = alpha
    return chip


class _LayerDraw:
    """One layer's draw, unit by unit (the layer, or each tile)."""

    def __init__(self, model, weight, sigma, generator, censor_k, verified_scale, mappings, name) -> None:
        self.model, self.weight, self.sigma, self.generator = model, weight, sigma, generator
        self.censor_k, self.verified, self.mappings, self.name = censor_k, verified_scale, mappings, name
        self.on = weight.device if generator is None else generator.device  # draws on the generator's device

    def run(self, tiles: list[tuple[int, int]] | None, readout: Callable | None,
            outputs: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(dW, alpha)``: ``alpha`` None unless the compensation acts on the outputs (then 0-d for one unit,
        ``[tiles]`` per tile)."""
        flat = self.weight.flatten(1)
        units = [None] if tiles is None else list(enumerate(tiles))
        reads, alphas = [], []
        for unit in units:
            r0, r1 = (0, flat.shape[1]) if unit is None else unit[1]
            block = self.weight if unit is None else flat[:, r0:r1]
            read, alpha = self._unit(block, None if unit is None else unit[0], r0, r1, readout)
            if alpha is not None and not outputs:
                read = read * alpha
            reads.append(read.reshape(block.shape))
            alphas.append(alpha)
        read = reads[0] if unit is None else torch.cat(reads, 1).view_as(self.weight)
        dW = (read - self.weight.detach().to(self.on)).to(self.weight.device)
        if not outputs or alphas[0] is None:
            return dW, None
        if tiles is not None:
            return dW, torch.stack(alphas).to(self.weight.device)
        return dW, _as_before(self.weight.detach(), dW, reads[0] * alphas[0]).to(self.weight.device)

    def _unit(self, block, tile, r0, r1, readout):
        """One unit's read weights (uncompensated) and its compensation factor (None without compensation)."""
        model, block_on = self.model, block.to(self.on)
        scale = None if self.verified is None else self.verified.flatten(1)[:, r0:r1].reshape(block.shape).to(self.on)
        if not model.quantize:  # the Gaussian model: one draw per unit, its std from the unit's max |W|
            dW = model.sample(block_on, self.sigma, self.generator, self.censor_k)
            return block_on.detach() + (dW if scale is None else dW * scale), None
        mapped = cached_mapping(model, self.mappings, (self.name, tile), self.weight, self.on, block_on)
        programmed, read, _ = effects.draw(model, block_on, self.sigma, self.generator, self.censor_k, scale, mapped)
        if not model.drift_compensation:
            return read, None
        if readout is None:
            return read, effects.compensation(programmed, read, model.drift_compensation_input)
        return read, readout(tile, programmed, r0, r1) / readout(tile, read, r0, r1)


def _as_before(w: torch.Tensor, dW: torch.Tensor, compensated: torch.Tensor) -> torch.Tensor:
    """A layer's factor as neft 0.x computed it from two draws, ``<W_d, W_c> / <W_d, W_d>`` with ``W_d = w + dW`` and
    ``W_c = w + (compensated - w)`` (``alpha`` itself to float rounding; kept so that per-run accuracies stay those
    of earlier versions, which an ADC's rounding would otherwise change in rare chips)."""
    now, then = w + dW, w + (compensated - w)
    power = now.square().sum()
    return torch.where(power > 0, (now * then).sum() / power.clamp_min(1e-30), torch.ones_like(power))


def cached_mapping(model: DeviceModel, mappings: dict | None, key, owner: torch.Tensor, on: torch.device,
                   block: torch.Tensor) -> effects.Mapped:
    """:func:`neft.chip.effects.map_layer` of ``block`` (part or all of the parameter ``owner``, already on ``on``),
    cached in ``mappings[key]`` while ``owner`` is the same tensor at the same version and device (an optimiser
    step in place, or another draw device, maps it again); ``mappings`` None: no cache."""
    cached = (mappings or {}).get(key)  # (the weight itself, its version, device, mapping): held, not reused
    if cached and cached[0] is owner and cached[1:3] == (owner._version, on):
        return cached[3]
    mapped = effects.map_layer(model, block)
    if mappings is not None:
        mappings[key] = (owner, owner._version, on, mapped)
    return mapped
