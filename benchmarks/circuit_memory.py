"""Peak memory of Monte Carlo evaluation through the crossbar circuit against the plain path (docs/method.md,
'The crossbar circuit').

Each setting runs in its own fresh process (so one peak does not hide another): VGG8 (``--width``, default 1) with
random weights evaluates two chips at sigma 0.1 on ``--batch`` random 1x32x32 images in one batch, one chip per
pass, eager, contiguous layout. Reported: the peak resident memory of the evaluation (``ru_maxrss`` after it minus
the resident memory before it) and its ratio to the plain path's, for read noise per read (``read_sigma`` 0.05), a
tiled 6-bit ADC with 8-bit DACs (``--tile-rows``, default 128), the bit-sliced ADC, IR drop on the tiles
(``wire_resistance`` 1e-4) and the tiled ADC with per-chip converter errors.

    python benchmarks/circuit_memory.py --batch 1000      # the batch of the speed targets
    python benchmarks/circuit_memory.py --batch 250       # a smaller batch for a busy 2-core machine
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, torch
import neft.models
from neft.evaluation import montecarlo
torch.manual_seed(0)
width, batch, settings = float(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
model = neft.models.create("vgg8", 10, 1, width).eval()
images, labels = torch.randn(batch, 1, 32, 32), torch.randint(0, 10, (batch,))
calibration = images[:64].clone()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    model(images[:64])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
extra = {"calibration_images": calibration} if settings.get("adc_bits") else {}
montecarlo.evaluate(model, images, labels, [0.1], runs=2, batch_size=batch, chips_per_pass=1, compile=False,
                    memory_format="contiguous", progress=False, **settings, **extra)
print(json.dumps({"peak_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""

ROWS = {
    "plain": {},
    "read noise per read": {"read_sigma": 0.05},
    "ADC tiles": {"adc_bits": 6, "dac_bits": 8},
    "ADC sliced": {"adc_bits": 6, "dac_bits": 8, "adc_mode": "sliced"},
    "IR drop": {"wire_resistance": 1e-4},
    "ADC errors": {"adc_bits": 6, "dac_bits": 8, "adc_offset": 0.5, "adc_gain": 0.02, "adc_inl": 0.5,
                   "adc_mismatch": 0.05},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1000, help="test images in the one batch (default 1000)")
    parser.add_argument("--width", type=float, default=1.0, help="VGG8 width (default 1)")
    parser.add_argument("--tile-rows", type=int, default=128, help="rows per tile of the ADC rows (default 128)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma list of rows (default {','.join(ROWS)})")
    args = parser.parse_args()
    chosen = ["plain"] + [row for row in args.rows.split(",") if row in ROWS and row != "plain"]
    peaks = {}
    for label, settings in ((row, ROWS[row]) for row in chosen):
        if "adc_bits" in settings or "wire_resistance" in settings:
            settings = {**settings, "tile_rows": args.tile_rows}
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.width), str(args.batch), json.dumps(settings)],
                             check=True, capture_output=True, text=True).stdout
        peaks[label] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
        print(f"VGG8 width {args.width:g}, batch {args.batch}, {label:20}: peak +{peaks[label]:8.0f} MiB "
              f"({peaks[label] / peaks['plain']:.2f}x plain)", flush=True)


if __name__ == "__main__":
    main()
