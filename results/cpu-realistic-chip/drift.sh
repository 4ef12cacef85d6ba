#!/usr/bin/env bash
# The drift sweep of the 4-epoch cpu-realistic-chip grid (run after `neft reproduce configs/cpu-realistic-chip.toml`):
# the script of the 30-epoch grid on this grid's networks, writing results/cpu-realistic-chip/drift/ (its committed
# files cover the seed-0 networks of vanilla, noise-injection and OVF; this evaluates IRS and rcg too).
exec bash "$(dirname "$0")/../cpu-realistic-chip-30/drift.sh" "${1:-runs/cpu-realistic-chip}" results/cpu-realistic-chip/drift
