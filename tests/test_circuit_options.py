"""The crossbar circuit under the Monte Carlo engine's execution options (docs/method.md, 'The crossbar circuit',
'With the engine's options'): several chips per pass with vmap, channels_last, bf16 and torch.compile give the
per-run accuracies of the reference path (one chip per pass, NCHW, fp32, eager), or a documented fallback."""

import warnings

import pytest
import torch
from torch import nn

from neft.evaluation import chip_forward, montecarlo

REFERENCE = {"memory_format": "contiguous", "compile": False, "chips_per_pass": 1, "precision": "fp32",
             "progress": False}
CIRCUITS = {
    "adc": {"tile_rows": 32, "adc_bits": 4},
    "sliced adc": {"tile_rows": 32, "adc_bits": 4, "adc_mode": "sliced"},
    "dac": {"dac_bits": 3},
    "read noise": {"read_sigma": 0.2},
    "all": {"tile_rows": 48, "adc_bits": 5, "dac_bits": 5, "read_sigma": 0.1},
    "periphery": {"tile_rows": 48, "adc_bits": 5, "dac_bits": 5, "read_sigma": 0.1, "out_noise": 0.2,
                  "input_management": "abs_max", "bound_management": "iterative", "weight_scaling": "column",
                  "converter_codes": "sign_magnitude"},
}


@pytest.fixture(scope="module")
def reference(lenet):
    """The reference path's entry for a circuit (one chip per pass, NCHW, fp32, eager), computed once per circuit."""
    done = {}

    def entry(circuit):
        key = tuple(sorted(circuit.items()))
        if key not in done:
            done[key] = evaluate(lenet, circuit)[0]
        return done[key]
    return entry


def evaluate(setup, circuit, **options):
    """The one sigma entry of a 4-chip evaluation at sigma 0.2 with the circuit settings ``circuit``; no
    warnings other than those of the options (returned)."""
    model, images, labels, calibration = setup
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = montecarlo.evaluate(model, images, labels, [0.2], runs=4, calibration_images=calibration,
                                     **{**REFERENCE, **circuit, **options})
    return result["per_sigma"][0], [str(w.message) for w in caught]


@pytest.mark.parametrize("circuit", CIRCUITS.values(), ids=CIRCUITS.keys())
def test_chips_per_pass_with_vmap_gives_the_one_chip_results(lenet, reference, circuit):
    one = reference(circuit)
    vmapped, notes = evaluate(lenet, circuit, chips_per_pass=3)  # 4 chips: a pass of 3, then one of 1
    assert vmapped["execution"]["chips_per_pass"] == 3
    assert notes == []  # no fallback and no per-call vmap performance warning
    assert vmapped["accuracy"]["per_run"] == one["accuracy"]["per_run"]
    assert vmapped["ekl"] == pytest.approx(one["ekl"], rel=1e-5)
    assert len(set(one["accuracy"]["per_run"])) > 1  # the chips differ: the comparison is not vacuous


@pytest.mark.parametrize("circuit", CIRCUITS.values(), ids=CIRCUITS.keys())
def test_channels_last_agrees_with_nchw(lenet, reference, circuit):
    nchw = reference(circuit)
    nhwc, notes = evaluate(lenet, circuit, memory_format="channels_last")
    assert nhwc["execution"]["memory_format"] == "channels_last" and notes == []
    # as for the plain path (test_chip_forward.py): a layout changes float rounding only, within one image
    one_image = 100 / 100
    assert max(abs(a - b) for a, b in zip(nhwc["accuracy"]["per_run"], nchw["accuracy"]["per_run"])) <= one_image
    assert nhwc["ekl"] == pytest.approx(nchw["ekl"], rel=1e-3)


@pytest.mark.parametrize("circuit", CIRCUITS.values(), ids=CIRCUITS.keys())
def test_bf16_is_close_to_fp32(lenet, reference, circuit):
    fp32 = reference(circuit)
    bf16, notes = evaluate(lenet, circuit, precision="bf16")
    assert notes == []
    # the plain path's bound (test_montecarlo.py): mean accuracies within 2 points; measured at most 1.0 here
    assert abs(bf16["accuracy"]["mean"] - fp32["accuracy"]["mean"]) < 2.0
    assert max(abs(a - b) for a, b in zip(bf16["accuracy"]["per_run"], fp32["accuracy"]["per_run"])) <= 5.0


def test_compile_with_read_noise_evaluates_eagerly_with_one_warning(lenet, reference):
    eager = reference(CIRCUITS["all"])
    fallback, notes = evaluate(lenet, CIRCUITS["all"], compile=True)
    assert notes == ["compile=True: torch.compile is not used with read noise per read (each read's draw breaks the "
                     "graph in every mapped layer, and the pieces recompile per layer and tile without a speed-up); "
                     "evaluating without compilation"]
    assert fallback["execution"]["compiled"] is False
    assert fallback["accuracy"]["per_run"] == eager["accuracy"]["per_run"]


def test_auto_does_not_compile_an_active_circuit(lenet, monkeypatch):
    requested = []
    monkeypatch.setattr(chip_forward.torch, "compile", lambda function, **kwargs: requested.append(1) or function)
    monkeypatch.setattr(montecarlo, "COMPILE_AFTER_FLOP", 0)  # every evaluation is large enough to compile
    result, _ = evaluate(lenet, CIRCUITS["adc"], compile="auto")
    assert not requested and result["execution"]["compiled"] is False
    evaluate(lenet, {"tile_rows": 32}, compile="auto")  # tiles alone change nothing: the plain path compiles
    assert requested


def tiny_conv_net():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5)).eval()


@pytest.mark.slow  # one compile of the per-tile graph under vmap
def test_compiled_circuit_matches_eager():
    model = tiny_conv_net()  # 9 and 64 crossbar rows: 1 and 2 tiles of 32 rows, 4 bit slices each
    torch.manual_seed(4)
    images, labels = torch.randn(50, 1, 8, 8), torch.randint(0, 5, (50,))
    settings = {**REFERENCE, "tile_rows": 32, "adc_bits": 4, "dac_bits": 4, "adc_mode": "sliced", "runs": 3,
                "batch_size": 20, "calibration_images": images[:20]}
    eager = montecarlo.evaluate(model, images, labels, [0.2], **settings)["per_sigma"][0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # batches of 17, 17 and 16 (padded) images; 3 chips in passes of 2 (padded)
        compiled = montecarlo.evaluate(model, images, labels, [0.2],
                                       **{**settings, "compile": True, "chips_per_pass": 2})["per_sigma"][0]
    if not compiled["execution"]["compiled"]:  # no working compiler here (the fallback: test_chip_forward.py)
        pytest.skip(f"torch.compile does not work on this machine: {[str(w.message) for w in caught]}")
    one_image = 100 / 50
    assert max(abs(a - b) for a, b in zip(compiled["accuracy"]["per_run"], eager["accuracy"]["per_run"])) \
        <= one_image + 1e-9
    assert compiled["ekl"] == pytest.approx(eager["ekl"], rel=1e-3)


def test_auto_layout_is_channels_last_with_the_circuit_and_its_tiles_keep_it(lenet, monkeypatch):
    """The layout check compares the model itself in NCHW and channels_last, with the circuit bypassed (the ADC's
    rounding would flip codes on float-level differences and refuse channels_last), and the tile convolutions of a
    channels_last evaluation read channels_last inputs and weights, as the plain path does."""
    from neft.chip.circuit_layer import CircuitLayer

    substituted, layouts = [], []
    agrees = chip_forward.ChipForward._agrees

    def spy_agrees(self, x, memory_format):
        substituted.extend("forward" in layer.module.__dict__ for layer in self.circuit.layers)
        layouts.clear()  # the calibration forward ran before, on the NCHW calibration images
        return agrees(self, x, memory_format)

    matmul = CircuitLayer.matmul

    def spy_matmul(self, x, weight):
        if x.dim() == 4 and x.shape[1] > 1:
            layouts.append((x.is_contiguous(memory_format=torch.channels_last),
                            weight.is_contiguous(memory_format=torch.channels_last)))
        return matmul(self, x, weight)

    monkeypatch.setattr(chip_forward.ChipForward, "_agrees", spy_agrees)
    monkeypatch.setattr(CircuitLayer, "matmul", spy_matmul)
    entry, _ = evaluate(lenet, CIRCUITS["adc"], memory_format="auto")
    assert entry["execution"]["memory_format"] == "channels_last"
    assert substituted and not any(substituted)  # checked on the plain layers
    assert layouts and all(x and w for x, w in layouts)
