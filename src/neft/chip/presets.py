"""The device presets: the device models neft ships, by name, and where each of their numbers comes from
(docs/method.md, 'State-dependent variation and presets', 'Realistic presets'; ``neft devices`` lists them).
"""

from __future__ import annotations

from neft.chip.device_laws import (
                                   AIHWKIT_NU_MEAN_LAW,
                                   AIHWKIT_NU_STD_LAW,
                                   AIHWKIT_PROG_COEFFS,
                                   AIHWKIT_READ_1F,
                                   AIHWKIT_T_READ,
)
from neft.chip.device_model import DeviceModel

__all__ = ["PRESETS", "PRESET_SOURCES"]

PRESETS: dict[str, DeviceModel] = {
    "RRAM1": DeviceModel("RRAM1", state_factor=1.0),
    "FeFET2": DeviceModel("FeFET2", state_factor=2.0),
    "RRAM4": DeviceModel("RRAM4", state_factor=4.0),
    "FeFET6": DeviceModel("FeFET6", state_factor=6.0),
    "RRAM-chip": DeviceModel("RRAM-chip", quantize=True, stuck_off=0.0175, stuck_on=0.0904),
    "PCM-chip": DeviceModel("PCM-chip", quantize=True, drift_nu_mean_law=AIHWKIT_NU_MEAN_LAW,
                            drift_nu_std_law=AIHWKIT_NU_STD_LAW, drift_nu_abs=True, drift_compensation=True),
    "PCM-aihwkit": DeviceModel("PCM-aihwkit", weight_bits=24, device_bits=24, quantize=True, g_max=25.0,
                               on_off_ratio=float("inf"), prog_noise_coeffs=AIHWKIT_PROG_COEFFS,
                               drift_nu_mean_law=AIHWKIT_NU_MEAN_LAW, drift_nu_std_law=AIHWKIT_NU_STD_LAW,
                               drift_nu_abs=True, read_noise_1f=AIHWKIT_READ_1F, t_read=AIHWKIT_T_READ,
                               drift_compensation=True, drift_compensation_input="one-hot",
                               clip_g_max=False, drift_of="resplit"),  # aihwkit 1.2 as shipped, not physics
    "RRAM-Milo": DeviceModel("RRAM-Milo", quantize=True, g_max=225.0, on_off_ratio=4.5,
                             prog_noise_coeffs=(4.782321, -0.009107 * 225.0)),
}

# Where every number of a preset comes from (``neft devices`` prints it; docs/method.md, 'Realistic presets').
PRESET_SOURCES: dict[str, str] = {
    "RRAM1": "state-independent variation, 8/2 bits (NeFT, Qin et al. 2023, and its release)",
    "FeFET2": "intermediate states vary 2x (the release's FeFET2)",
    "RRAM4": "intermediate states vary 4x (the release's RRAM4)",
    "FeFET6": "intermediate states vary 6x (the release's FeFET6)",
    "RRAM-chip": "8/2-bit quantized differential mapping, g 2.5-25 uS (on/off 10: CrossSim's default range); "
                 "stuck_off 1.75 %, stuck_on 9.04 % (RRAM stuck-at-0/1 rates attributed to Chen et al., IEEE Trans. "
                 "Computers 64(1), 2015, as fault-tolerance papers cite them; UNVERIFIED: not checked against the "
                 "paper's full text); with 8 devices per weight 59.9 % of weights hold a stuck device and about "
                 "51 % change value (N(0, 1) weights, sigma 0); no drift (RRAM retention loss is small next to PCM "
                 "drift)",
    "PCM-chip": "8/2-bit quantized differential mapping, g 2.5-25 uS (on/off 10: CrossSim's default range); drift "
                "nu = |N(mu(g), sigma(g))| from t0 = 20 s at each device's own conductance, mu = clip(0.0244 - "
                "0.0155 ln(g/g_max), 0.049, 0.1), sigma = clip(-0.0059 - 0.0125 ln(g/g_max), 0.008, 0.045) "
                "(aihwkit 1.2 PCMLikeNoiseModel, fitted on the PCM devices of Joshi et al., Nature Communications "
                "2020: about 0.049 +- 0.008 at the 2-bit levels 0.4-1 g_max, 0.060 +- 0.023 at g_min); global "
                "drift compensation on, all-ones readout; no stuck devices",
    "PCM-aihwkit": "aihwkit 1.2 PCMLikeNoiseModel defaults (aihwkit/inference/noise/pcm.py; Nandakumar et al., "
                   "ICECS 2019; Joshi et al., Nature Communications 2020): one analog device per weight and sign "
                   "(24/24 bits: the 2**24 - 1 levels of float32, aihwkit's SinglePairConductanceConverter), g_max "
                   "25 uS, g_min 0; programming std 0.26348 + 1.9650 x - 1.1731 x**2 uS, x = g/g_max; drift nu = "
                   "|N(mu(g), sigma(g))| as PCM-chip from t0 = 20 s; 1/f read noise Q_s = min(0.0088 / max(x**0.65, "
                   "1e-3), 0.2), t_read 250 ns, frozen per chip and read time; GlobalDriftCompensation of aihwkit "
                   "1.2 (one-hot inputs, mean |output|); read at aihwkit's t_inference + 20 s; sigma adds in "
                   "quadrature to the programming std, so sigma 0 is aihwkit's chip; two aihwkit 1.2 conventions "
                   "that are not device physics, kept to reproduce aihwkit as shipped: conductances clamped at 0 "
                   "only, never at g_max (clip_g_max = false), and drift and 1/f noise acting on the programmed "
                   "weight re-split onto one device per sign with the new scale g_max / max|W_p| (drift_of = "
                   "resplit; aihwkit/inference/noise/base.py apply_drift_noise)",
    "RRAM-Milo": "8/2-bit quantized differential mapping, g 50-225 uS (on/off 4.5); programming std 4.782321 - "
                 "0.009107 g uS of the target g in uS (Milo et al., 'Optimized programming algorithms for multilevel "
                 "RRAM in hardware neural networks', IRPS 2021, Fig. 4, IGVVA-100, as CrossSim 3.2's "
                 "simulator/devices/custom/RRAM_Milo.py fits it), added in quadrature to sigma's; no stuck devices, "
                 "no drift",
}
