"""The periphery of the crossbar circuit as aihwkit runs it (docs/method.md, 'The periphery'): one mapped layer's
output with output noise per read, per-vector input scaling, iterative bound management, a fixed output bound,
per-column weight scaling and sign-magnitude converter codes (the settings: :mod:`neft.chip.periphery_settings`).

Each tile's read, for an input scale ``s`` (per input vector with ``input_management="abs_max"``: its max |x|, for a
convolution each output position's receptive field over the tile's channels; else the layer's calibrated DAC full
scale) and weight unit ``u`` (``weight_scaling``: the layer's max |W|, each column's, or 1), is (aihwkit
``rpu_forward_backward_pass.cpp``, ``ForwardBackwardPassIOManaged::forwardVector``):

1. DAC: ``x_q = codes(x / (s F d)) s F d`` with ``d`` the normalised DAC step (``1 / full_scale_steps``) and ``F``
   the bound-management factor (1 on the first read);
2. the crossbar: ``p = x_q W`` plus read noise (:mod:`neft.chip.read_noise`, absolute units);
3. normalised output ``y = p / (s F u) + out_noise * z`` with ``z`` standard normal, drawn per read;
4. ADC: ``y`` to the codes of full scale ``B`` (``out_bound``, or the ``adc_range`` percentile of the clean ``y`` of
   the calibration images), or clipped to ``+-out_bound`` without ``adc_bits``;
5. bound management (``"iterative"``): an input vector any of whose outputs saturated (``|y| > B``) is read again
   with ``F`` doubled and fresh noise, until none saturates or ``F`` exceeds ``min(MAX_BM_FACTOR, MAX_BM_RESOLUTION /
   d)`` (aihwkit's ``max_bm_factor = 1000`` and ``max_bm_res = 0.25``); its last read is kept;
6. digital: ``y s F u`` (times the tile's drift compensation factor when it acts on the outputs per tile) summed
   over tiles, times the layer's factor when it acts on the outputs per layer
   (:mod:`neft.chip.compensation_placement`), plus the bias.

Rounding has straight-through gradients (:func:`neft.chip.converters.codes`); the scales carry none.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from neft.chip.circuit_layer import CircuitLayer, conv_pads, padded, window_reduce
from neft.chip.circuit_settings import CircuitSettings
from neft.chip.compensation_placement import ALPHA
from neft.chip.converters import calibration_magnitude, codes, full_scale_steps
from neft.chip.periphery_settings import MAX_BM_FACTOR, MAX_BM_RESOLUTION

__all__ = ["managed_output", "attempts", "compensation_readout"]

_TINY = torch.finfo(torch.float32).tiny
CHUNK = 16  # images whose receptive fields are quantized at a time (per-patch DAC codes of a convolution)


def attempts(settings: CircuitSettings) -> int:
    """Reads of one input vector at most: 1 without bound management, else the factors ``1, 2, 4, ...`` up to the
    first above ``min(MAX_BM_FACTOR, MAX_BM_RESOLUTION / d)`` (``d`` the normalised DAC step; no DAC: 1000)."""
    if settings.bound_management == "none":
        return 1
    limit = float(MAX_BM_FACTOR)
    if settings.dac_bits is not None:
        limit = min(limit, MAX_BM_RESOLUTION * full_scale_steps(settings.dac_bits, True, _symmetric(settings)))
    count, factor = 1, 1
    while factor <= limit:
        factor, count = factor * 2, count + 1
    return count


def _symmetric(settings: CircuitSettings) -> bool:
    return settings.converter_codes == "sign_magnitude"


def managed_output(layer: CircuitLayer, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   settings: CircuitSettings, calibrating: bool,
                   read_noise: Callable[[int, int, torch.Tensor], torch.Tensor] | None,
                   out_noise: Callable[[int, int, int, torch.Tensor], torch.Tensor] | None,
                   batched: bool) -> torch.Tensor:
    """The output of ``layer`` (weight ``weight``, bias ``bias``) on ``x`` ``[B, C_in, *spatial]`` or ``[..., in]``
    through the periphery of ``settings`` (the module docstring's steps), shaped as the plain layer's.

    Args:
        read_noise: ``read_noise(layer, tile, like)`` standard normal draws shaped like a tile's outputs, or None.
        out_noise: ``out_noise(layer, tile, attempt, like)`` likewise for the output noise of read ``attempt``, or
            None (no output noise: calibration, clean forwards).
        calibrating: record the DAC's and ADC's full scales (clean, no noise, no quantization).
        batched: inside ``torch.func.vmap`` over chips (every bound-management read is made, as vmap cannot branch
            on the data; the results are the same).
    """
    if calibrating:
        layer.calibrate_input(x, settings)
    total = None
    alpha = getattr(layer.module, ALPHA, None)  # drift compensation on the digitised outputs
    for tile in range(len(layer.tiles)):
        partial = _tile_output(layer, tile, layer.tile_input(x, tile), layer.tile_weight(weight, tile), settings,
                               calibrating, read_noise, out_noise, batched)
        if alpha is not None and alpha.dim() == 1:  # one factor per tile (tile_mapping="tile")
            partial = partial * alpha[tile]
        total = partial if total is None else total + partial
    if alpha is not None and alpha.dim() == 0:
        total = total * alpha
    if bias is not None:
        total = total + bias.reshape((-1,) + (1,) * (total.dim() - 2) if layer.conv is not None else (-1,))
    return total


def _tile_output(layer, tile, xt, weight, settings, calibrating, read_noise, out_noise, batched) -> torch.Tensor:
    """One tile's digital output (steps 1-5 of the module docstring), in the layer's output units."""
    per_vector = settings.input_management == "abs_max"
    unfold = per_vector and settings.dac_bits is not None and layer.conv is not None  # per-patch DAC codes
    # a channel-cutting tile's input scale needs its im2col: made once, quantized in place by the first read
    patches = _patches(layer, xt) if unfold and layer.masks[tile] is not None else None
    scale = _input_scale(layer, xt, per_vector, tile, patches).detach()  # [B, 1, *positions], [..., 1] or 0-d
    unit = _weight_unit(layer, tile, settings, weight.dim())
    reads = 1 if calibrating else attempts(settings)
    bounded = calibrating or settings.adc_bits is not None or settings.out_bound is not None
    out, pending = None, None
    for attempt in range(reads):
        factor = 2.0 ** attempt
        scaled = scale * factor if attempt else scale
        partial, patches = _crossbar(layer, tile, xt, weight, scaled, settings, per_vector, unfold,
                                     patches if not attempt else None, keep=read_noise is not None, batched=batched)
        if read_noise is not None and not calibrating:
            inputs = patches if unfold else _dac(xt, scaled, settings, per_vector, layer)
            partial = _noisy(partial, read_noise(layer.index, tile, partial), _read_std(layer, tile, partial, inputs,
                                                                                        unfold), 1.0, batched)
        norm = scaled * unit if unit is not None else scaled
        draw = out_noise(layer.index, tile, attempt, partial) if out_noise is not None and not calibrating else None
        if not bounded:  # no converter reads the normalised outputs: the noise in output units, in place
            return partial if draw is None else _noisy(partial, draw, norm, settings.out_noise, batched)
        norm = norm.clamp_min(_TINY) if torch.is_tensor(norm) else max(norm, _TINY)
        # partial is this read's own, overwritten, unless it is needed, tracked or of a lower precision than the
        # normalised outputs (bf16 autocast: the division promotes it to fp32)
        owned = not (calibrating or batched or _tracked(partial)) and partial.dtype == torch.result_type(partial, norm)
        y = partial.div_(norm) if owned else partial / norm
        if draw is not None:
            y = _noisy(y, draw, None, settings.out_noise, batched)
        if calibrating:
            if settings.adc_bits is not None and settings.out_bound is None:
                layer.adc_scale.append(calibration_magnitude(y, settings.adc_range))
            return partial
        y, saturated = _adc(y, layer, tile, settings, owned)
        y = y.mul_(norm) if owned else y * norm
        out = y if out is None else torch.where(pending, y, out)
        if saturated is None:
            return out
        pending = saturated if pending is None else pending & saturated
        if not batched and attempt + 1 < reads and not bool(pending.any()):
            break
    return out


def _noisy(values: torch.Tensor, draw: torch.Tensor, std, scale: float, batched: bool) -> torch.Tensor:
    """``values + draw * std * scale`` (``std`` None: 1): in place when no gradient is wanted (the draw is
    overwritten; ``addcmul_`` has no vmap batching rule, so under vmap two in-place passes)."""
    if torch.is_grad_enabled():
        return values + (draw * scale if std is None else draw * std * scale)
    if std is not None and torch.is_tensor(std) and not batched:
        return values.addcmul_(draw, std, value=scale)
    draw = draw if std is None else draw.mul_(std)
    return values.add_(draw, alpha=scale)


def _input_scale(layer: CircuitLayer, xt: torch.Tensor, per_vector: bool, tile: int | None = None,
                 patches: torch.Tensor | None = None) -> torch.Tensor:
    """The input scale ``s``: each input vector's max |x| (``per_vector``; over the rows of tile ``tile``, from the
    im2col ``patches`` of ``xt`` when given), shaped to broadcast over the tile's outputs, or the layer's calibrated
    DAC full scale (a 0-d tensor; 1 without a DAC, never used then)."""
    if not per_vector:
        return layer.dac_scale if layer.dac_scale is not None else torch.ones((), device=xt.device)
    if layer.conv is None:
        return xt.detach().abs().amax(-1, keepdim=True)
    m = layer.module
    if tile is not None and layer.masks[tile] is not None and m.groups == 1 and layer.conv is F.conv2d:
        # a tile that cuts through a channel's kernel rows (tile_split="equal"): the max over its own rows only
        r0, r1 = layer.tiles[tile]
        start = r0 - layer._channels(tile)[0] * layer.kernel
        rows = (_patches(layer, xt) if patches is None else patches).detach()[:, start:start + r1 - r0]
        return rows.abs().amax(1, keepdim=True).unflatten(2, _positions(layer, xt))  # [B, 1, H', W']
    # [B, groups, *spatial]: one input vector per group
    magnitude = padded(m, xt.detach().unflatten(1, (m.groups, -1)).abs().amax(2))  # aminmax: 2-10x slower
    # separable maxima of shifted views (max_pool is slow on one channel on a CPU); out of place: vmap batches it
    scale = window_reduce(magnitude, m.kernel_size, m.stride, m.dilation, torch.maximum, torch.maximum)
    return scale if m.groups == 1 else scale.repeat_interleave(m.out_channels // m.groups, dim=1)


def _weight_unit(layer: CircuitLayer, tile: int, settings: CircuitSettings, dims: int) -> torch.Tensor | None:
    """The weight unit ``u`` of the tile's columns: the layer's clean max |W| (a 0-d tensor), each column's
    (``[C, 1, ...]`` to broadcast over outputs ``[B, C, *positions]``, ``[C]`` for a Linear) or None (1)."""
    if settings.weight_scaling == "off":
        return None
    clean = layer.clean.detach()
    if settings.weight_scaling == "layer":
        return clean.abs().amax()
    columns = layer.tile_weight(clean, tile).abs().flatten(1).amax(1)
    return columns if layer.conv is None else columns.reshape(-1, *[1] * (dims - 2))


def _dac(xt, scale, settings, per_vector, layer, owned: bool = False) -> torch.Tensor:
    """The DAC's output ``codes(x / (s d)) s d`` in input units (``xt`` itself without a DAC); ``owned``: ``xt`` is
    the caller's own copy, overwritten when no gradient is wanted. Per-vector scales with symmetric codes cannot
    clip (``|x| <= s F``, the codes reach ``+-1 / d``): the DAC then only rounds, bit for bit the same codes."""
    if settings.dac_bits is None:
        return xt
    signed = True if per_vector else layer.dac_signed
    # floored after the division: _TINY / steps would be subnormal, flushed to 0 on some CPUs (0 / 0: NaN)
    step = (scale / full_scale_steps(settings.dac_bits, signed, _symmetric(settings))).clamp_min(_TINY)
    if per_vector and _symmetric(settings) and not (torch.is_grad_enabled() and xt.requires_grad):
        return (xt.div_(step) if owned else xt / step).round_().mul_(step)
    return _times(_coded(xt / step, settings.dac_bits, signed, settings), step)


def _tracked(values: torch.Tensor) -> bool:
    """Whether autograd records operations on ``values`` (they must then not be overwritten)."""
    return torch.is_grad_enabled() and values.requires_grad


def _times(codes_: torch.Tensor, step) -> torch.Tensor:
    """``codes_ * step``, in place when no gradient is wanted."""
    return codes_ * step if _tracked(codes_) else codes_.mul_(step)


def _coded(x: torch.Tensor, bits: int, signed: bool, settings: CircuitSettings) -> torch.Tensor:
    """:func:`neft.chip.converters.codes` of ``x`` (a tensor the caller owns: in place when no gradient is wanted,
    with the clamps vmap batches)."""
    return codes(x, bits, signed, inplace=True, batched=True, symmetric=_symmetric(settings))


def _crossbar(layer, tile, xt, weight, scale, settings, per_vector, unfold, patches=None, keep=False,
              batched=False):
    """The tile's analog sums ``x_q W`` in output units, and (``unfold``: per-patch DAC codes of a convolution;
    ``keep``) the quantized patches ``[B, K, L]`` they were computed from (``K`` in ``weight.flatten(1)``'s order,
    ``L`` the output positions; ``patches``: the im2col of ``xt``, overwritten, None: made here). The patches are
    made, quantized and multiplied :data:`CHUNK` images at a time (small temporaries that stay in cache: twice as
    fast on a CPU as the whole batch at once), each chunk's sums written straight into the output where nothing
    records the operations (no gradient, no vmap, no autocast), else concatenated."""
    if not unfold:
        return layer.matmul(_dac(xt, scale, settings, per_vector, layer), weight), None
    flat, outs, kept, groups = weight.flatten(1), [], [], layer.module.groups
    direct = not (batched or torch.is_grad_enabled() or torch.is_autocast_enabled(xt.device.type))
    sums = xt.new_empty((xt.shape[0], flat.shape[0], scale.shape[2:].numel())) if direct else None
    for start in range(0, xt.shape[0], CHUNK):
        part = slice(start, start + CHUNK)
        rows = _patches(layer, xt[part]) if patches is None else patches[part]
        if groups == 1:
            rows = _dac(rows, scale[part].flatten(2), settings, True, layer, owned=True)
        else:  # each group's rows at its own input scale (scale: one per output, the same within a group)
            group_scale = scale[part][:, ::flat.shape[0] // groups].flatten(2).unsqueeze(2)  # [b, groups, 1, L]
            rows = _dac(rows.unflatten(1, (groups, -1)), group_scale, settings, True, layer, owned=True).flatten(1, 2)
        if direct:
            _group_matmul(flat, rows, groups, out=sums[part])  # [b, C_out, L]
        else:
            outs.append(_group_matmul(flat, rows, groups))
        if keep:
            kept.append(rows)
    out = sums if direct else outs[0] if len(outs) == 1 else torch.cat(outs)
    kept = (kept[0] if len(kept) == 1 else torch.cat(kept)) if keep else None
    return out.unflatten(2, scale.shape[2:]), kept  # [B, C_out, H', W']


def _group_matmul(flat: torch.Tensor, rows: torch.Tensor, groups: int, out: torch.Tensor | None = None):
    """``flat`` ``[C_out, K]`` times ``rows`` ``[B, groups * K, L]`` group by group (output channels of group
    ``j`` read rows ``j K .. (j + 1) K``): ``[B, C_out, L]``, written into ``out`` when given."""
    if groups == 1:
        return torch.matmul(flat, rows, out=out)
    result = torch.matmul(flat.unflatten(0, (groups, -1)), rows.unflatten(1, (groups, -1))).flatten(1, 2)
    return result if out is None else out.copy_(result)


def _patches(layer: CircuitLayer, x: torch.Tensor) -> torch.Tensor:
    """The receptive fields of a Conv2d's input ``x`` ``[B, C, H, W]`` as columns ``[B, C * kh * kw, L]`` (im2col:
    rows in ``weight.flatten(1)``'s order, ``L = H' W'`` output positions, as ``torch.nn.functional.unfold``): one
    copy of padded, strided, dilated views, whose innermost runs are rows of the image (3-10x faster on a CPU than
    ``F.unfold``), never sharing ``x``'s memory."""
    m = layer.module
    x = padded(m, x)
    for axis, (k, s, d) in enumerate(zip(m.kernel_size, m.stride, m.dilation), start=2):  # views, no copy
        x = x.unfold(axis, (k - 1) * d + 1, s)
        x = x[..., ::d] if d > 1 else x
    patches = x.permute(0, 1, 4, 5, 2, 3).flatten(1, 3).flatten(2)  # [B, C, kh, kw, H', W'] -> [B, K, L]: one copy
    # a 1x1 kernel at stride 1 without padding can be a view of the input itself: copied, as the DAC then
    # overwrites the patches
    view = set(m.kernel_size) == {1} and set(m.stride) == {1} and not any(conv_pads(m))
    return patches.clone() if view else patches


def _positions(layer: CircuitLayer, x: torch.Tensor) -> tuple[int, ...]:
    """``(H', W')``: the output positions of the layer's Conv2d on ``x`` ``[B, C, H, W]``."""
    m = layer.module
    pads = conv_pads(m)  # (left, right, top, bottom), as padded() adds them
    size = [x.shape[2] + pads[2] + pads[3], x.shape[3] + pads[0] + pads[1]]
    return tuple((size[a] - m.dilation[a] * (m.kernel_size[a] - 1) - 1) // m.stride[a] + 1 for a in range(2))


def _read_std(layer, tile, partial, inputs, unfold: bool) -> torch.Tensor:
    """The read-noise std of each output from the tile's (quantized) inputs: ``layer.read_variance`` on an image
    layout, or (``unfold``) ``var @ patches^2`` on quantized patches ``[B, K, L]``."""
    if not unfold:
        return layer.read_variance(inputs, tile, partial.shape[1]).sqrt()
    const, groups = layer.read_const[tile], layer.module.groups
    squares = inputs.square()
    if const is not None:  # [B, groups, L]: one sum per group, repeated over its output channels
        variance = squares.unflatten(1, (groups, -1)).sum(2) * const
        variance = variance if groups == 1 else variance.repeat_interleave(partial.shape[1] // groups, dim=1)
    else:
        variance = _group_matmul(layer.read_var[tile].flatten(1).to(inputs.dtype), squares, groups)
    return variance.unflatten(2, partial.shape[2:]).sqrt()


def _adc(y: torch.Tensor, layer: CircuitLayer, tile: int, settings: CircuitSettings, owned: bool = False):
    """The normalised outputs ``y`` through the ADC (or clipped to ``+-out_bound``), and which input vectors
    saturated (``[B, 1, *positions]`` or ``[..., 1]``; None without bound management); ``owned``: ``y`` is the
    caller's own, overwritten by the codes."""
    bound = settings.out_bound
    if bound is None and settings.adc_bits is not None:
        bound = float(layer.adc_scale[tile])
    if bound is None:
        return y, None
    saturated = None
    if settings.bound_management != "none":
        channel = 1 if layer.conv is not None else -1
        saturated = y.detach().abs().amax(channel, keepdim=True) > bound
    if settings.adc_bits is None:
        return y.clamp(-bound, bound), saturated
    if bound == 0:
        return torch.zeros_like(y), saturated
    step = bound / full_scale_steps(settings.adc_bits, True, _symmetric(settings))
    return _times(_coded(y.div_(step) if owned else y / step, settings.adc_bits, True, settings), step), saturated


def compensation_readout(layer: CircuitLayer, tiles: list[int], weights: torch.Tensor, settings: CircuitSettings,
                         generator: torch.Generator | None, one_hot: bool = True) -> torch.Tensor:
    """The global drift compensation readout of a chip's tiles ``tiles`` of ``layer`` through the periphery, as
    aihwkit 1.2 takes it (``InferenceTileWithPeriphery._forward_drift_readout_tensor`` in
    ``aihwkit/simulator/tiles/inference.py``: the tile's noisy forward, IO parameters included, of
    ``GlobalDriftCompensation.get_readout_tensor`` = ``eye(in)``; ``readout`` = the mean |output| floored at 1e-4,
    ``aihwkit/inference/compensation/drift.py``).

    Every tile is read with each one-hot input vector ``e_i`` of its rows (``one_hot``; else one all-ones vector,
    neft's ``drift_compensation_input="ones"``) through steps 1-5 of the module docstring: input scale ``s`` (1 with
    ``input_management="abs_max"``, else the layer's DAC full scale), DAC, output noise drawn from ``generator``
    (``randn`` shaped ``[vectors, out]`` per read), ADC or bound, bound management; the digital outputs ``y s F
    u`` of all the tiles' vectors are averaged in absolute value. No read noise per read (aihwkit's readout has
    none: ``w_noise = 0``). Without a calibrated ADC range yet (calibration not run) the outputs are not bounded.

    Args:
        layer: the mapped layer (its tiles, calibrated ranges and clean weights for the weight unit).
        tiles: indices of the layer's tiles read.
        weights: ``[out, rows]`` the chip's weights of those tiles, side by side, in weight units.
        settings: the circuit's settings.
        generator: the chip's generator (the output noise).

    Returns:
        The readout, a 0-d tensor >= 1e-4; ``alpha = readout(W(t0)) / readout(W(t))``.
    """
    per_vector = settings.input_management == "abs_max"
    total, count, offset = 0.0, 0, layer.tiles[tiles[0]][0]
    with torch.no_grad():
        for tile in tiles:
            r0, r1 = layer.tiles[tile]
            block = weights[:, r0 - offset:r1 - offset]
            products = block.t() if one_hot else block.sum(1, keepdim=True).t()  # [vectors, out]: x W for x = 1
            out = _readout_tile(layer, tile, products, settings, per_vector, generator)
            total, count = total + out.abs().sum(), count + out.numel()
        return (total / count).clamp_min(1e-4)


def _readout_tile(layer, tile, products, settings, per_vector, generator) -> torch.Tensor:
    """One tile's digital outputs for inputs of 1 on its rows (``products`` = ``x W`` at x = 1)."""
    unit = _weight_unit(layer, tile, settings, 2)
    base = (layer.dac_scale if not per_vector and layer.dac_scale is not None
            else torch.ones((), dtype=products.dtype, device=products.device))
    bounded = settings.out_bound is not None or (settings.adc_bits is not None and layer.adc_scale is not None)
    out, pending = None, None
    for attempt in range(attempts(settings) if bounded else 1):
        scaled = base * 2.0 ** attempt
        x = _dac(torch.ones((), dtype=products.dtype, device=products.device), scaled, settings, per_vector, layer)
        norm = scaled * unit if unit is not None else scaled
        y = products * (x / norm)
        if settings.out_noise > 0:
            y = y + settings.out_noise * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        saturated = None
        if bounded:
            y, saturated = _adc(y, layer, tile, settings)
        y = y * norm
        out = y if out is None else torch.where(pending, y, out)
        if saturated is None:
            break
        pending = saturated if pending is None else pending & saturated
        if not bool(pending.any()):
            break
    return out
