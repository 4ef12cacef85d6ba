"""The device presets: the device models neft ships, by name, and where each of their numbers comes from
(docs/method.md, 'State-dependent variation and presets', 'Realistic presets'; ``neft devices`` lists them).
"""

from __future__ import annotations

from neft.chip.device_model import DeviceModel

__all__ = ["PRESETS", "PRESET_SOURCES"]

PRESETS: dict[str, DeviceModel] = {
    "RRAM1": DeviceModel("RRAM1", state_factor=1.0),
    "FeFET2": DeviceModel("FeFET2", state_factor=2.0),
    "RRAM4": DeviceModel("RRAM4", state_factor=4.0),
    "FeFET6": DeviceModel("FeFET6", state_factor=6.0),
    "RRAM-chip": DeviceModel("RRAM-chip", quantize=True, stuck_off=0.0175, stuck_on=0.0904),
    "PCM-chip": DeviceModel("PCM-chip", quantize=True, drift_nu_mean=0.06, drift_nu_std=0.02,
                            drift_compensation=True),
}

# Where every number of a preset comes from (``neft devices`` prints it; docs/method.md, 'Realistic presets').
PRESET_SOURCES: dict[str, str] = {
    "RRAM1": "state-independent variation, 8/2 bits (NeFT, Qin et al. 2023, and its release)",
    "FeFET2": "intermediate states vary 2x (the release's FeFET2)",
    "RRAM4": "intermediate states vary 4x (the release's RRAM4)",
    "FeFET6": "intermediate states vary 6x (the release's FeFET6)",
    "RRAM-chip": "8/2-bit quantized differential mapping; stuck_off 1.75 %, stuck_on 9.04 % (RRAM stuck-at-0/1 "
                 "rates of Chen et al., IEEE Trans. Computers 64(1), 2015, as fault-tolerance papers cite them); "
                 "no drift (RRAM retention loss is small next to PCM drift)",
    "PCM-chip": "8/2-bit quantized differential mapping; drift nu ~ N(0.06, 0.02) clipped at 0 from t0 = 20 s "
                "(aihwkit PCMLikeNoiseModel: mean 0.060, std 0.023 at 10 % of g_max, fitted on the PCM devices "
                "of Joshi et al., Nature Communications 2020); global drift compensation on (aihwkit "
                "GlobalDriftCompensation); no stuck devices",
}
