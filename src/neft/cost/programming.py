"""Seconds and joules to program one chip and to apply each per-chip fix (docs/method.md, 'What a chip costs',
'Programming').

The count is the one SWIM (Yan et al., DAC 2022) and TSB use: programming time grows with the number of
write-verified devices, each taking ``verify_pulses`` iterations of one write pulse and one verify read, while a
device programmed open-loop takes ``open_loop_pulses`` write pulses; ``parallel_writes`` devices are programmed at
once. A weight has ``2 n`` devices (``n = weight_bits / device_bits`` digits on a differential pair). Per pulse:

* write: ``write_voltage**2 * g_on * write_time`` joules (a device at its highest conductance: an upper bound) and
  ``write_time`` seconds;
* verify read: ``read_voltage**2 * g_on * read_time + adc_fom * 2**ideal_bits`` joules and ``read_time + 1 /
  adc_sample_rate`` seconds.

The terms, from the counts a results file records (``deployment_cost``, docs/results.md):

* ``programming``: every mapped weight's devices written open-loop;
* ``write_verify``: the verified weights' devices, their verified cost minus the open-loop cost already counted;
* ``recalibrate_bn``: one inference on the chip per image;
* ``chip_tune``: each tuning image's forward on the chip and its backward (``backward_factor`` times a forward),
  then the block's weights written with verification.
"""

from __future__ import annotations

from neft.cost.technology import Technology

__all__ = ["programming_cost", "deployment_counts", "TERMS"]

TERMS = ("programming", "write_verify", "recalibrate_bn", "chip_tune")


def _pulses(tech: Technology, devices: int, verified: bool) -> tuple[float, float]:
    """``(seconds, joules)`` of programming ``devices`` devices, verified or open-loop."""
    write_energy = tech.write_voltage ** 2 * tech.g_on * tech.write_time
    if not verified:
        pulses = devices * tech.open_loop_pulses
        return pulses * tech.write_time / tech.parallel_writes, pulses * write_energy
    pulses = devices * tech.verify_pulses
    read_energy = tech.read_voltage ** 2 * tech.g_on * tech.read_time + tech.adc_fom * 2 ** tech.ideal_bits
    seconds = pulses * (tech.write_time + tech.read_time + tech.adc_time) / tech.parallel_writes
    return seconds, pulses * (write_energy + read_energy)


def deployment_counts(deployment: dict) -> dict[str, float]:
    """The counts of one chip's ``deployment_cost`` (a results file's; missing entries count 0): ``mapped_weights``,
    ``weights_verified``, ``recalibrate_bn.images``, ``chip_tune.images``, ``weights_written_verified``.

    Raises:
        ValueError: a section that is not a table, or a count that is not a number >= 0 (a damaged results file),
            naming it.
    """
    def section(name: str) -> dict:
        value = deployment.get(name, {})
        if not isinstance(value, dict):
            raise ValueError(f"deployment_cost entry {name} is not a table of counts ({value!r})")
        return value

    if not isinstance(deployment, dict):
        raise ValueError(f"deployment_cost is not a table of counts ({deployment!r})")
    counts = {"mapped_weights": deployment.get("mapped_weights", 0),
              "weights_verified": section("write_verify").get("weights_verified", 0),
              "recalibrate_bn.images": section("recalibrate_bn").get("images", 0),
              "chip_tune.images": section("chip_tune").get("images", 0),
              "weights_written_verified": section("chip_tune").get("weights_written_verified", 0)}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"deployment_cost count {name} must be a number >= 0, got {value!r}: the results file "
                             "is damaged")
    return counts


def programming_cost(deployment: dict, devices_per_weight: int, tech: Technology, inference_energy: float,
                     inference_latency: float) -> dict[str, dict[str, float]]:
    """The per-chip cost of programming and of each fix.

    Args:
        deployment: the counts of one chip (a results file's ``deployment_cost``): ``mapped_weights``,
            ``write_verify.weights_verified``, ``recalibrate_bn.images``, ``chip_tune.images`` and
            ``chip_tune.weights_written_verified`` (missing entries count 0).
        devices_per_weight: ``n`` (``weight_bits / device_bits``).
        tech: the technology constants.
        inference_energy, inference_latency: joules and seconds of one inference on the chip.

    Returns:
        ``{term: {"seconds": s, "joules": j}}`` for each of :data:`TERMS` and ``"total"``.

    Raises:
        ValueError: a count that is not a number >= 0 (a damaged results file), naming it
            (:func:`deployment_counts`).
    """
    counts = deployment_counts(deployment)
    devices = 2 * devices_per_weight
    open_time, open_energy = _pulses(tech, devices * counts["mapped_weights"], verified=False)
    verified = devices * counts["weights_verified"]
    verify_time, verify_energy = _pulses(tech, verified, verified=True)
    undo_time, undo_energy = _pulses(tech, verified, verified=False)
    block_time, block_energy = _pulses(tech, devices * counts["weights_written_verified"], verified=True)
    tuning = counts["chip_tune.images"] * (1 + tech.backward_factor)
    cost = {"programming": (open_time, open_energy),
            "write_verify": (verify_time - undo_time, verify_energy - undo_energy),
            "recalibrate_bn": (counts["recalibrate_bn.images"] * inference_latency,
                               counts["recalibrate_bn.images"] * inference_energy),
            "chip_tune": (tuning * inference_latency + block_time, tuning * inference_energy + block_energy)}
    cost["total"] = (sum(t for t, _ in cost.values()), sum(e for _, e in cost.values()))
    return {term: {"seconds": seconds, "joules": joules} for term, (seconds, joules) in cost.items()}
