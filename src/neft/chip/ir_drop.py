"""IR drop on a crossbar tile: the resistance of the wires between neighbouring cells (docs/method.md, 'The crossbar
circuit', 'IR drop').

The array is CrossSim 3.2's default topology (``simulator/circuits/array/NonInterleaved_InputSource.py``, chosen
by ``simulator/cores/numeric_core.py`` for its default ``BALANCED`` core with ``interleaved_posneg = False``): the
``G+`` and ``G-`` devices of a differential pair sit in two separate arrays whose column currents are subtracted
outside the arrays, and each cell's current is drawn from the row (input) line that carries its input voltage.
For one array of ``m`` columns (outputs) and ``n`` rows (inputs), conductances ``G[i, j]`` in units of the device's
highest conductance ``g_max`` and a wire resistance ``r`` per segment in units of ``R_on = 1 / g_max`` (CrossSim's
``Rp_row / Rmin`` and ``Rp_col / Rmin``, both ``r`` here):

* row ``j`` is driven at input voltage ``x[j]`` from the end next to column 0; the segment before column ``s``
  carries the currents of the cells ``k >= s`` of that row, so cell ``(i, j)`` sees the row voltage
  ``x[j] - r * sum_k (min(i, k) + 1) * I[k, j]``;
* column ``i`` is held at virtual ground by its ADC past row ``n - 1``; the segment after row ``s`` carries the
  currents of the cells ``k <= s``, so cell ``(i, j)`` sits at ``r * sum_k (n - max(j, k)) * I[i, k]``;
* ``I[i, j] = G[i, j] * (row voltage - column voltage)``, and column ``i`` delivers ``sum_j I[i, j]``.

With linear devices the column currents are linear in the inputs, ``I = M(G, r) x``: the IR drop is a change of the
tile's effective conductances, computed once per chip and tile (not per image). :func:`solve` solves the node
equations exactly (tests, validation); :func:`effective_conductance` is the fast, differentiable approximation that
the circuit uses, a fixed point of the node equations in which every cell's current is proportional to its own
input (its accuracy against CrossSim's solver: benchmarks/README.md, 'IR drop against CrossSim').
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["solve", "effective_conductance", "tile_weight", "layer_tile", "check_validity", "MIN_KEPT", "ITERATIONS",
           "MAX_EXACT_NODES"]

ITERATIONS = 4  # fixed-point iterations of effective_conductance (chosen by measurement, benchmarks/README.md)
MAX_EXACT_NODES = 4608  # node voltages solve() solves for at most (a dense solve: 2 m n unknowns)
MIN_KEPT = 0.4  # a tile whose first-order drop keeps less of its conductance is beyond the approximation (see below)


def solve(conductance: torch.Tensor, inputs: torch.Tensor, ratio: float) -> torch.Tensor:
    """The column currents of one array with wire resistance, from its node equations solved exactly (dense, float64).

    Unknowns are the row-line and column-line voltages at every cell; Kirchhoff's current law at each node
    (the topology of this module's docstring) gives ``2 m n`` linear equations.

    Args:
        conductance: ``[m, n]`` cell conductances in units of ``g_max`` (>= 0), ``m`` columns, ``n`` rows.
        inputs: ``[n]`` or ``[B, n]`` row input voltages (any unit; currents come out in that unit times ``g_max``).
        ratio: wire resistance per segment over ``R_on`` (>= 0); 0 gives ``inputs @ conductance.T``.

    Returns:
        float64 column currents ``[m]`` or ``[B, m]``.

    Raises:
        ValueError: a negative ratio or conductance, shapes that do not match, or more than
            :data:`MAX_EXACT_NODES` unknowns (use :func:`effective_conductance`).
    """
    g = conductance.detach().to(torch.float64)
    x = inputs.detach().to(torch.float64)
    m, n = g.shape
    if ratio < 0 or bool((g < 0).any()):
        raise ValueError("solve needs ratio >= 0 and conductances >= 0")
    if x.shape[-1] != n:
        raise ValueError(f"inputs {tuple(x.shape)} must end with the {n} rows of conductance {tuple(g.shape)}")
    if ratio == 0:
        return x @ g.T
    if 2 * m * n > MAX_EXACT_NODES:
        raise ValueError(f"solve: {2 * m * n} unknowns > {MAX_EXACT_NODES}; use effective_conductance")
    wire = 1.0 / ratio
    size = m * n
    row = torch.arange(size).view(m, n)  # row-line node of cell (i, j)
    col = row + size  # column-line node of cell (i, j)
    a = torch.zeros(2 * size, 2 * size, dtype=torch.float64)
    b = torch.zeros(2 * size, *x.shape[:-1], dtype=torch.float64)
    for i in range(m):
        for j in range(n):
            r, c, cell = int(row[i, j]), int(col[i, j]), float(g[i, j])
            # row node: wire to the previous node (the driver for i = 0), wire to the next, the cell to (i, j)'s column
            a[r, r] += wire + cell
            a[r, c] -= cell
            if i == 0:
                b[r] += wire * x[..., j]
            else:
                a[r, int(row[i - 1, j])] -= wire
            if i < m - 1:
                a[r, r] += wire
                a[r, int(row[i + 1, j])] -= wire
            # column node: the cell from the row, wire to the previous row's node, wire to the next (ground after n-1)
            a[c, c] += cell + wire
            a[c, r] -= cell
            if j > 0:
                a[c, c] += wire
                a[c, int(col[i, j - 1])] -= wire
            if j < n - 1:
                a[c, int(col[i, j + 1])] -= wire
    voltages = torch.linalg.solve(a, b)  # [2 m n, *batch]
    last = col[:, n - 1]
    return (voltages[last] * wire).movedim(0, -1)  # the current into each column's virtual ground


def effective_conductance(conductance: torch.Tensor, ratio: float, iterations: int = ITERATIONS) -> torch.Tensor:
    """The effective conductances ``W`` of arrays with wire resistance: column currents ``I ~ W x`` (fast,
    differentiable).

    A fixed point of the node equations in which cell ``(i, j)`` carries ``W[i, j] x[j]`` (its current proportional to
    its own input): the row line lowers its voltage by ``r x[j] A[i, j]``, ``A[i, j] = sum_k (min(i, k) + 1)
    W[k, j]``, and the column line raises it by ``r sum_k (n - max(j, k)) W[i, k] x[k]``, so

    ``W = G * (1 - r A(W)) - r W * C``, ``C[i, k] = sum_j G[i, j] (n - max(j, k))``,

    iterated from ``W = G`` in the form ``W <- G * (1 - r A(W)) / (1 + r C)`` (the column term solved for ``W``
    exactly, which converges in fewer iterations than the plain Jacobi form and for larger drops). The first iteration
    is exact to first order in ``r``; further ones make the drop self-consistent (cells starved by the drop draw less
    current and load the lines less). ``A`` and ``C`` are cumulative sums: an iteration costs a few passes over the
    array. It neglects how a cell's current depends on the other rows' inputs through the column line (an
    ``O(r**2)`` cross term): against CrossSim's solver it is within 0.5 % rms while the drop is below about 40 % and
    breaks down beyond (benchmarks/README.md, 'IR drop against CrossSim').

    Args:
        conductance: ``[..., m, n]`` conductances in units of ``g_max`` (>= 0; the leading dimensions are arrays
            solved independently, e.g. chips under ``torch.func.vmap``).
        ratio: wire resistance per segment over ``R_on``, >= 0 (0: ``conductance`` itself).
        iterations: fixed-point iterations (>= 1).

    Returns:
        ``[..., m, n]`` effective conductances, same dtype.
    """
    if ratio == 0:
        return conductance
    g = conductance
    # C[i, k] = sum_{s >= k} sum_{j <= s} G[i, j]: reverse cumulative sum of the cumulative sum along the rows
    c = _reverse_cumsum(torch.cumsum(g, -1), -1)
    denominator = 1 + ratio * c
    w = g
    for _ in range(iterations):
        a = torch.cumsum(_reverse_cumsum(w, -2), -2)  # A[i, j] = sum_{s <= i} sum_{k >= s} W[k, j]
        w = g * (1 - ratio * a) / denominator
    return w


def _reverse_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``y[k] = sum_{s >= k} x[s]`` along ``dim``."""
    return torch.flip(torch.cumsum(torch.flip(x, (dim,)), dim), (dim,))


def tile_weight(weight: torch.Tensor, unit: float, ratio: float, rows: tuple[int, int],
                iterations: int = ITERATIONS) -> torch.Tensor:
    """A tile's weight as its two arrays compute with IR drop: ``unit * (W(G+) - W(G-))`` with ``G+ = relu(w) /
    unit`` and ``G- = relu(-w) / unit`` (:func:`effective_conductance`; docs/method.md, 'IR drop').

    Args:
        weight: the tile's weight ``[out, ...]`` (the channels its rows read, as
            :meth:`neft.chip.circuit_layer.CircuitLayer.tile_weight` gives it): columns are the ``out`` outputs
            (column 0 next to the row drivers), rows the flattened ``weight[0]`` (row 0 farthest from the ADC).
        unit: the weight that one device at ``g_max`` holds (> 0; a float or a 0-d tensor).
        ratio: wire resistance per segment over ``R_on`` (>= 0).
        rows: ``(lo, hi)``: the flattened rows that are on this tile (the rest, masked to 0, belong to neighbouring
            tiles and are not part of its array).

    Returns:
        The effective weight, same shape; rows outside ``rows`` stay 0.
    """
    flat = weight.flatten(1)
    lo, hi = rows
    on_tile = flat[:, lo:hi]
    pair = torch.stack([on_tile.clamp_min(0), (-on_tile).clamp_min(0)]) / unit  # [2, out, rows]: G+ and G-
    effective = effective_conductance(pair, ratio, iterations) * unit
    out = effective[0] - effective[1]
    if lo > 0 or hi < flat.shape[1]:
        out = torch.nn.functional.pad(out, (lo, flat.shape[1] - hi))
    return out.reshape(weight.shape)


def layer_tile(layer, tile: int, part: int, weight: torch.Tensor, ratio: float, device_model,
               iterations: int = ITERATIONS) -> torch.Tensor:
    """The weight of tile ``tile`` (bit slice ``part``) of a circuit layer as it computes with IR drop
    (:func:`tile_weight`; docs/method.md, 'IR drop').

    A device at ``g_max`` holds the layer's clean ``max|W|`` in analog mode (one conductance pair per weight), and
    ``(2**device_bits - 1) * 2**(part * device_bits) * max|W| / (2**weight_bits - 1)`` (its top level) on bit slice
    ``part`` in sliced mode (:func:`neft.chip.converters.slices`).

    Args:
        layer: a :class:`neft.chip.circuit_layer.CircuitLayer` (its tiles, kernel size, clean weight, slices).
        weight: the tile's weight ``[out, channels, *kernel]``
            (:meth:`~neft.chip.circuit_layer.CircuitLayer.tile_weight`).
        ratio: ``wire_resistance`` (> 0).
        device_model: the :class:`neft.chip.device_model.DeviceModel` (bits of the sliced mapping).
    """
    unit = layer.clean.detach().abs().amax().to(weight.dtype).clamp_min(torch.finfo(weight.dtype).tiny)
    if layer.slice_count > 1:
        k = device_model.device_bits
        unit = unit * ((2 ** k - 1) * 2 ** (part * k) / (2 ** device_model.weight_bits - 1))
    r0, r1 = layer.tiles[tile]
    first = r0 // layer.kernel * layer.kernel if len(layer.tiles) > 1 else 0  # the first row of the tile's channels
    return tile_weight(weight, unit, ratio, (r0 - first, r1 - first), iterations)


def check_validity(layers, ratio: float, device_model, names) -> float:
    """Warn when the first-order IR drop of a tile (one iteration of :func:`effective_conductance`, which cannot
    diverge), on the clean weights, leaves its G+ or G- array less than :data:`MIN_KEPT` of its conductance (the sum
    of the effective conductances over the sum of the conductances). Measured on Gaussian-weight arrays of 16-128
    rows: that share is 0.45-0.6 at ``r n**2 = 8``, where the approximation is within 2.5 % rms of the exact
    solution, and 0.13-0.33 at ``r n**2 = 16``, where it is 20 % off and further iterations diverge (docs/method.md,
    'IR drop'). Returns the smallest share found (1.0 without drop).

    Args:
        layers: the circuit's :class:`neft.chip.circuit_layer.CircuitLayer` list.
        ratio: ``wire_resistance`` (> 0).
        device_model: the :class:`neft.chip.device_model.DeviceModel`.
        names: the crossbar's mapped weight names (for the message).

    Warns:
        RuntimeWarning: naming the layer, the tile and the share, once per circuit.
    """
    from neft.chip.converters import slices  # the sliced mapping's parts

    worst, where = 1.0, None
    with torch.no_grad():
        for layer in layers:
            clean = layer.clean.detach()
            parts = [clean] if layer.slice_count == 1 else slices(clean, clean, device_model).unbind(0)
            for tile in range(len(layer.tiles)):
                for part, weight in enumerate(parts):
                    tile_part = layer.tile_weight(weight, tile)
                    for array in (tile_part.clamp_min(0), tile_part.clamp_max(0)):  # the G+ and the G- array
                        ideal = array.sum()
                        effective = layer_tile(layer, tile, part, array, ratio, device_model, 1).sum()
                        kept = float(effective / ideal) if ideal != 0 else 1.0
                        if kept < worst:
                            worst, where = kept, (names[layer.index], tile)
    if worst < MIN_KEPT:
        warnings.warn(f"wire_resistance {ratio:g}: tile {where[1]} of {where[0]!r} keeps {worst:.0%} of its ideal "
                      "conductance to first order, beyond what the fast IR-drop approximation reproduces (within a "
                      f"few percent of the exact solution down to about {MIN_KEPT:.0%}; docs/method.md, 'IR drop'): "
                      "use fewer tile_rows or a smaller wire_resistance", RuntimeWarning, stacklevel=3)
    return worst
