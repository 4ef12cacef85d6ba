"""Method variants (ablations) and how reports label them."""

import pytest

from neft.training import variants


def test_parse_variants():
    assert variants.parse("ovf") == ("ovf", {})
    assert variants.parse("noise-injection T=4") == ("noise-injection", {"temperature": 4.0})
    assert variants.parse("ovf beta=0") == ("ovf", {"beta": 0.0})
    assert variants.parse("noise-injection init=torch T=2") == (
        "noise-injection", {"init": "torch", "temperature": 2.0})
    assert variants.directory_name("ovf beta=0") == "ovf_beta=0"
    assert variants.parse("rcg k=2") == ("rcg", {"censor_k": 2.0})
    assert variants.parse("lipschitz lambda=0.01") == ("lipschitz", {"lipschitz_lambda": 0.01})
    assert variants.parse("distill alpha=0.5 T=2") == ("distill", {"distill_alpha": 0.5, "distill_temperature": 2.0})


@pytest.mark.parametrize("spec, message", [
    ("awp", "unknown method"), ("ovf gamma=1", "key T, beta, init, k, scale, lambda, alpha, device"),
    ("ovf beta", "key=value"), ("ovf beta=-1", "beta must be"), ("noise-injection T=0", "temperature must be"),
    ("ovf T=4", "noise-injection and distill only"),
    ("irs init=xavier", "init must be"), ("ovf beta=abc", "must be a number"), ("", "empty method"),
    ("ovf beta=0 beta=1", "given twice"), ("noise-injection beta=1", "ovf and irs only"),
    ("ovf k=1", "k applies to rcg only"), ("noise-injection lambda=1", "lambda applies to lipschitz only"),
    ("rcg alpha=0.5", "alpha applies to distill only"), ("rcg T=2", "noise-injection and distill only"),
    ("rcg k=-1", "censor_k must be"), ("distill alpha=1.5", "distill_alpha must be"),
    ("distill T=0", "distill_temperature must be"), ("distill T=1 T=2", "given twice"),
])
def test_bad_variants(spec, message):
    with pytest.raises(ValueError, match=message):
        variants.parse(spec)


def test_labels_name_only_what_differs_from_the_paper():
    base = {"model": "vgg8", "dataset": "fashion-mnist", "init": "kaiming", "temperature": 1.0}
    assert variants.label({**base, "method": "ovf", "beta": 1e-3}) == "ovf"  # the paper's VGG8/MNIST beta
    assert variants.label({**base, "method": "ovf", "beta": 0.0}) == "ovf beta=0"
    assert variants.label({**base, "method": "irs", "beta": 0.1}) == "irs beta=0.1"
    assert (variants.label({**base, "method": "noise-injection", "beta": 0.0, "temperature": 4.0})
            == "noise-injection T=4")
    torch_init = {**base, "method": "noise-injection", "beta": 0.0, "init": "torch"}
    assert variants.label(torch_init) == "noise-injection"
    assert variants.label(torch_init, show_init=True) == "noise-injection init=torch"
    assert variants.label({"method": "vanilla"}) == "vanilla"  # results written before these keys existed
    assert variants.label({"method": "rcg", "censor_k": 1.0}) == "rcg"  # the defaults are not named
    assert variants.label({"method": "rcg", "censor_k": 2.0}) == "rcg k=2"
    assert variants.label({"method": "lipschitz", "lipschitz_lambda": 0.01}) == "lipschitz lambda=0.01"
    assert variants.label({"method": "distill", "distill_alpha": 0.5, "distill_temperature": 4.0,
                           "teacher": "runs/t"}) == "distill alpha=0.5"
    assert variants.label({"method": "distill", "distill_alpha": 0.9, "distill_temperature": 2.0}) == "distill T=2"


def test_a_network_kept_at_its_own_init_is_named_so_beside_kaiming_ones():
    """"own" (an import-path network's default: not re-initialised) is a variant and a label like any init."""
    assert variants.parse("ovf init=own") == ("ovf", {"init": "own"})
    zoo, own = {"method": "noise-injection", "init": "kaiming"}, {"method": "noise-injection", "init": "own"}
    assert variants.labels([zoo, own]) == ["noise-injection", "noise-injection init=own"]
    assert variants.labels([own, own]) == ["noise-injection", "noise-injection"]  # named only when inits mix
