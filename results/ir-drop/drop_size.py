"""How large the IR drop of results/ir-drop is on a network's own weights (docs/method.md, 'IR drop').

For every mapped layer of one trained network and each tile size: the fraction of the ideal column current the
tiles keep (sum of the effective conductances of both arrays of the pair over the sum of the programmed ones; clean
weights, G = |w| / max|W| as the circuit maps them), the best single scale a of the layer's effective weight
(least squares of W_eff against W) and the size of what a scale does not explain, ||W_eff - a W|| / ||a W||: the
position-dependent part of the drop, to be set beside the device variation (sigma 0.35 of the conductance range).
Usage: python3 results/ir-drop/drop_size.py RUN_DIR [r]  (r: wire resistance over R_on, default run.sh's 2.32e-5)
"""

import sys

import torch

from neft.chip import ir_drop

TILES = (64, 128, 256, 512)


def layer_drop(weight: torch.Tensor, tile: int, ratio: float) -> tuple[float, float, float]:
    """(fraction kept, best scale, non-uniform part) of one layer's ``[out, in...]`` weight on tiles of ``tile``
    rows: the first ``tile`` inputs on tile 0 and so on, all outputs on the columns of each tile."""
    w = weight.reshape(weight.shape[0], -1).double()
    unit = w.abs().max()
    eff, kept, ideal = torch.zeros_like(w), 0.0, 0.0
    for start in range(0, w.shape[1], tile):
        part = w[:, start:start + tile] / unit
        pos, neg = part.clamp(min=0), (-part).clamp(min=0)
        pos_eff, neg_eff = ir_drop.effective_conductance(pos, ratio), ir_drop.effective_conductance(neg, ratio)
        eff[:, start:start + tile] = (pos_eff - neg_eff) * unit
        kept += float(pos_eff.sum() + neg_eff.sum())
        ideal += float(pos.sum() + neg.sum())
    scale = float((eff * w).sum() / (w * w).sum())
    return kept / ideal, scale, float((eff - scale * w).norm() / (scale * w).norm())


def main(run_dir: str, ratio: float) -> None:
    state = torch.load(f"{run_dir}/checkpoint.pt", map_location="cpu", weights_only=False)["state_dict"]
    print(f"{run_dir}, r = {ratio:g}: fraction of the current kept / position-dependent part, per tile size\n")
    print("| layer | rows x columns | " + " | ".join(f"{t} rows" for t in TILES) + " |")
    print("|---|---|" + "---:|" * len(TILES))
    for name, weight in state.items():
        if name.endswith("weight") and weight.dim() >= 2:
            cells = [layer_drop(weight, t, ratio) for t in TILES]
            print(f"| {name[:-7]} | {weight[0].numel()} x {weight.shape[0]} | "
                  + " | ".join(f"{kept:.3f} / {rest:.3f}" for kept, _, rest in cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 2.32e-5)
