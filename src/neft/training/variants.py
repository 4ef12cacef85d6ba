"""Method variants: a training method plus the settings that turn it into an ablation.

Experiments that ask *which part* of Negative Feedback Training does the work compare a method with variants of
itself (see the README's Results section):

- ``noise-injection T=4``: noise-injection with its logits divided by a temperature T (loss ``CE(z / T, y)``);
  T = N + 1 = 4 gives the backbone the same logit scaling as OVF's and IRS's negative feedback loss without any
  feedback term;
- ``ovf beta=0`` / ``irs beta=0``: the negative feedback loss with the feedback switched off;
- ``noise-injection init=torch``: PyTorch's default initialisation instead of the release's Kaiming fan_out;
- ``rcg k=2``, ``rcg scale=1.5``, ``lipschitz lambda=0.01``, ``correctnet lambda=1e-3``, ``distill alpha=0.5
  T=2``: the other answers to device variation (docs/method.md, 'Other answers to device variation') away from
  their default settings;
- ``ovf device=RRAM-chip``, ``ovf device=configs/chips/realistic-chip.toml``: training against another device
  model (a preset or a file), e.g. hardware-aware training on a realistic chip (docs/method.md, 'Training against
  the chip'); a report's label then says ``trained on NAME, evaluated on OTHER`` when the run was evaluated on
  another chip (:func:`neft.reporting.result_label`).

A variant is written ``"METHOD key=value ..."`` with keys ``T`` (temperature; for distill its softmax
temperature), ``beta``, ``init``, ``k`` (rcg's censor_k), ``scale`` (rcg_scale), ``lambda`` (lipschitz_lambda;
for correctnet its correctnet_lambda), ``alpha`` (distill_alpha) and ``device`` (the training device model), in
presets (``methods = ["ovf", "ovf beta=0"]``) and in report labels, so the label of a result is the text that made
it. A distill run's teacher is a [train] setting (``teacher``), not part of the variant.
"""

from __future__ import annotations

from neft.chip import devices
from neft.chip.circuit_settings import FIELDS as CIRCUIT_FIELDS
from neft.chip.circuit_settings import CircuitSettings
from neft.models import INITS as _INITS
from neft.training import objectives

__all__ = ["parse", "label", "labels", "mixed_inits", "directory_name", "training_chip"]

_KEYS = {"T": "temperature", "beta": "beta", "init": "init", "k": "censor_k", "scale": "rcg_scale",
         "lambda": "lipschitz_lambda", "alpha": "distill_alpha", "device": "device_model"}
# variant key -> setting where a method gives the key its own meaning
_METHOD_KEYS = {("distill", "T"): "distill_temperature", ("correctnet", "lambda"): "correctnet_lambda"}
# settings a label names when they differ from their default, with the variant key that names them
_LABELLED = {"censor_k": "k", "rcg_scale": "scale", "lipschitz_lambda": "lambda", "correctnet_lambda": "lambda",
             "distill_alpha": "alpha", "distill_temperature": "T"}


def parse(spec: str) -> tuple[str, dict]:
    """Split a variant ``"METHOD key=value ..."`` into the method and its :class:`~neft.training.config.TrainConfig`
    overrides.

    ``parse("noise-injection T=4") == ("noise-injection", {"temperature": 4.0})``;
    ``parse("ovf beta=0") == ("ovf", {"beta": 0.0})``; ``parse("ovf") == ("ovf", {})``;
    ``parse("distill alpha=0.5 T=2") == ("distill", {"distill_alpha": 0.5, "distill_temperature": 2.0})``.

    Raises:
        ValueError: for an empty spec, an unknown method or key, a key given twice, a malformed ``key=value``, an
            invalid value (T <= 0, beta < 0, an unknown init, k < 0, lambda < 0, alpha outside [0, 1]), T for a
            method other than noise-injection or distill, beta for a method other than ovf/irs, or k, lambda or
            alpha for a method other than rcg, lipschitz or distill.
    """
    if not str(spec).split():
        raise ValueError("an empty method name; give e.g. 'ovf' or 'ovf beta=0'")
    method, *options = str(spec).split()
    if method not in objectives.METHODS:
        raise ValueError(f"unknown method {method!r} in {spec!r}; choose one of {', '.join(objectives.METHODS)}, "
                         f"optionally followed by {', '.join(f'{key}=...' for key in _KEYS)} (e.g. 'ovf beta=0', "
                         "'rcg k=2', 'distill alpha=0.5 T=2')")
    overrides: dict = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in _KEYS:
            raise ValueError(f"{spec!r}: expected key=value with key {', '.join(_KEYS)}, got {option!r}")
        setting = _METHOD_KEYS.get((method, key), _KEYS[key])
        if setting in overrides:
            raise ValueError(f"{spec!r}: {key} is given twice")
        if key == "beta" and method not in ("ovf", "irs"):
            raise ValueError(f"{spec!r}: beta applies to ovf and irs only (the negative feedback strength)")
        owner = objectives.METHOD_SETTINGS.get(setting, (method,))[0]
        if owner != method:
            raise ValueError(f"{spec!r}: {key} applies to {owner} only")
        if key == "init":
            if value not in _INITS:
                raise ValueError(f"{spec!r}: init must be one of {', '.join(_INITS)}, got {value!r}")
            overrides["init"] = value
            continue
        if key == "device":
            try:
                devices.get(value)
            except (ValueError, FileNotFoundError) as error:
                raise ValueError(f"{spec!r}: device: {error}") from None
            overrides["device_model"] = value
            continue
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{spec!r}: {key} must be a number, got {value!r}") from None
        checks = {"temperature": objectives.check_temperature, "beta": objectives.check_beta}
        overrides[setting] = checks[setting](number) if setting in checks else objectives.check_setting(setting, number)
    if overrides.get("temperature", 1.0) != 1.0 and method != "noise-injection":
        raise ValueError(f"{spec!r}: T applies to noise-injection and distill only (OVF and IRS divide their logits "
                         "by N + 1)")
    return method, overrides


def label(result: dict, show_init: bool = False) -> str:
    """The variant label of a trained run: its method, plus ``T=..`` when the temperature is not 1, ``beta=..``
    when beta differs from the paper's value for the model and data set, ``k=..``, ``lambda=..``, ``alpha=..``
    and (distill) ``T=..`` when rcg's, lipschitz's or distill's settings differ from their defaults,
    ``init=..`` when ``show_init`` and the run did not use the release's Kaiming init (``init=unknown`` for an
    imported network, whose init is not known). The chip it was trained on is not part of it: reports add
    ``(trained on X, evaluated on Y)`` where that chip is not the evaluated one (:func:`training_chip`).

    Args:
        result: a ``results.json`` dict (or anything with ``method`` and optionally ``temperature``, ``beta``,
            ``censor_k``, ``lipschitz_lambda``, ``distill_alpha``, ``distill_temperature``, ``init``, ``model``,
            ``dataset``; results written before these keys existed read as the defaults).
        show_init: label the init (set it when the compared runs use different inits).
    """
    method = result["method"]
    parts = [method]
    temperature = result.get("temperature", 1.0) or 1.0
    if temperature != 1.0:
        parts.append(f"T={temperature:g}")
    beta = result.get("beta")
    if method in ("ovf", "irs") and beta is not None:
        default = objectives.default_beta(method, result.get("model", "any"), result.get("dataset", "any"))
        if beta != default:
            parts.append(f"beta={beta:g}")
    for setting, key in _LABELLED.items():
        owner, default = objectives.METHOD_SETTINGS[setting][:2]
        if method == owner and result.get(setting) is not None and result[setting] != default:
            parts.append(f"{key}={result[setting]:g}")
    if show_init and result.get("init", "kaiming") != "kaiming":
        parts.append(f"init={result['init'] or 'unknown'}")
    return " ".join(parts)


def training_chip(result: dict) -> str | None:
    """The chip a result's network was trained on: its training device model's name (derived names included,
    :meth:`neft.chip.device_model.DeviceModel.with_chip`) followed by the crossbar circuit it trained through,
    e.g. ``"RRAM1"``, ``"RRAM-chip stuck-off=0.05"``, ``"RRAM1 tile=64 adc=4b"``; None when the result does not
    record it (``train_device_model``: results straight from :func:`neft.evaluation.montecarlo.evaluate`, or files
    of schema version < 4). Results with different training chips never pool as seeds of one variant."""
    if not result.get("train_device_model"):
        return None
    circuit = (CircuitSettings(**{name: value for name, value in result["train_circuit"].items()
                                  if name in CIRCUIT_FIELDS}).label() if result.get("train_circuit") else "")
    return result["train_device_model"].get("name", "?") + circuit


def mixed_inits(results: list[dict]) -> bool:
    """Whether the results with a method were trained with more than one init (labels then name it)."""
    return len({r.get("init", "kaiming") for r in results if r.get("method")}) > 1


def labels(results: list[dict]) -> list[str]:
    """:func:`label` of each result, naming the init only when the results mix inits."""
    show_init = mixed_inits(results)
    return [label(r, show_init) for r in results]


def directory_name(spec: str) -> str:
    """A file-system name for a variant: spaces and ``/`` become ``_`` (``"ovf beta=0"`` -> ``"ovf_beta=0"``)."""
    return "_".join(str(spec).split()).replace("/", "_")
