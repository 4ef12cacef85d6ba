"""Recurrent and attention weights on the crossbar: nn.LSTM/GRU/RNN weight matrices and nn.MultiheadAttention's
input projections (docs/method.md, 'Which weights are mapped')."""

import json
import textwrap

import pytest
import torch
from torch import nn

from neft import Crossbar, make_generator, mapped_weight_names
from neft.cli.main import main
from neft.evaluation.montecarlo import evaluate

NETS = textwrap.dedent("""
    import torch
    from torch import nn

    class RowLSTM(nn.Module):
        '''Reads an image row by row: [B, C, H, W] -> H steps of C * W features.'''
        def __init__(self, num_classes, in_channels, hidden=16):
            super().__init__()
            self.lstm = nn.LSTM(in_channels * 32, hidden, num_layers=2, batch_first=True)
            self.head = nn.Linear(hidden, num_classes)

        def forward(self, x):
            out, _ = self.lstm(x.permute(0, 2, 1, 3).flatten(2))
            return self.head(out[:, -1])

    class RowTransformer(nn.Module):
        '''Image rows as tokens through one TransformerEncoderLayer.'''
        def __init__(self, num_classes, in_channels, d=16):
            super().__init__()
            self.embed = nn.Linear(in_channels * 32, d)
            self.encoder = nn.TransformerEncoderLayer(d, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.head = nn.Linear(d, num_classes)

        def forward(self, x):
            return self.head(self.encoder(self.embed(x.permute(0, 2, 1, 3).flatten(2))).mean(1))
""")


class Attention(nn.Module):
    """Self-attention with packed (in_proj_weight) or separate (q/k/v_proj_weight) projections."""

    def __init__(self, separate: bool):
        super().__init__()
        self.attention = nn.MultiheadAttention(6, 2, batch_first=True, kdim=5 if separate else None,
                                               vdim=5 if separate else None)
        self.key = nn.Linear(6, 5) if separate else nn.Identity()

    def forward(self, x):
        return self.attention(x, self.key(x), self.key(x))[0].mean(1)


def _recurrent_models():
    return {
        "lstm": (nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True), torch.randn(3, 6, 4)),
        "lstm-proj": (nn.LSTM(4, 5, proj_size=3, batch_first=True), torch.randn(3, 6, 4)),
        "gru": (nn.GRU(4, 5, batch_first=True), torch.randn(3, 6, 4)),
        "rnn": (nn.RNN(4, 5, nonlinearity="relu", batch_first=True), torch.randn(3, 6, 4)),
        "mha": (Attention(separate=False), torch.randn(3, 4, 6)),
        "mha-qkv": (Attention(separate=True), torch.randn(3, 4, 6)),
    }


def _output(model, x):
    out = model(x)
    return out[0] if isinstance(out, tuple) else out  # an RNN returns (output, state)


@pytest.mark.parametrize("kind", list(_recurrent_models()))
def test_a_chip_on_each_recurrent_or_attention_weight_alone_changes_the_output(kind):
    torch.manual_seed(0)
    model, x = _recurrent_models()[kind]
    model.eval()
    crossbar = Crossbar(model, "RRAM1")
    expected = {"lstm": 8, "lstm-proj": 3, "gru": 2, "rnn": 2, "mha": 2, "mha-qkv": 5}[kind]  # + out_proj, key
    assert len(crossbar.names) == expected
    matrices = [n for n, p in model.named_parameters() if p.dim() == 2]
    assert set(crossbar.names) == set(matrices)  # every weight matrix is on the crossbar, no bias is
    with torch.no_grad():
        clean = _output(model, x)
        zero = crossbar.forward(x, sigma=0.0)
        assert torch.equal(zero[0] if isinstance(zero, tuple) else zero, clean)  # sigma 0: bit-identical
        chip = crossbar.sample_chip(0.1, make_generator(0))
        for name in crossbar.names:
            alone = {other: dW if other == name else torch.zeros_like(dW) for other, dW in chip.items()}
            perturbed = torch.func.functional_call(model, crossbar.perturbed_weights(alone), (x,))
            perturbed = perturbed[0] if isinstance(perturbed, tuple) else perturbed
            assert (perturbed - clean).abs().max() > 1e-4, f"a chip on {name} alone left the output unchanged"
    placement = {row.name: row.placement for row in crossbar.summary()}
    assert all(placement[n] == "crossbar" for n in crossbar.names)
    assert all(placement[n].startswith("digital: bias") for n, p in model.named_parameters() if "bias" in n)


def test_recurrent_weights_no_longer_warn_as_digital():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mapped_weight_names(nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 3)))[-2:] == ["1.weight_ih_l0",
                                                                                          "1.weight_hh_l0"]


@pytest.mark.parametrize("factory", ["RowLSTM", "RowTransformer"])
def test_lstm_and_transformer_models_train_with_noise_injection_and_evaluate(tmp_path, factory, capsys):
    (tmp_path / "nets.py").write_text(NETS)
    spec = f"{tmp_path / 'nets.py'}:{factory}"
    run = tmp_path / "run"
    assert main(["train", "--model", spec, "--method", "noise-injection", "--sigma", "0.1", "--epochs", "1",
                 "--train-subset", "300", "--test-subset", "100", "--val-runs", "2", "--lr", "0.01", "--quiet",
                 "--out", str(run)]) == 0
    assert main(["layers", "--model", spec]) == 0
    listed = capsys.readouterr().out
    wanted = (["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1"]
              if factory == "RowLSTM" else ["encoder.self_attn.in_proj_weight", "encoder.self_attn.out_proj.weight"])
    assert all(name in listed.split("digital parameter")[0] for name in wanted)  # listed among the crossbar weights
    assert main(["evaluate", str(run), "--sigmas", "0,0.2", "--runs", "3", "--test-subset", "100", "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    clean, noisy = (point["accuracy"] for point in results["per_sigma"])
    from neft import data
    from neft.store import checkpoint

    model = checkpoint.load(run)
    assert set(wanted) <= set(Crossbar(model).names)
    dataset = data.load("mnist-5k", test_subset=100)
    x = torch.cat([b for b, _ in dataset.batches("test", 1000)])
    with torch.no_grad():
        assert clean["mean"] == pytest.approx(100.0 * float((model(x).argmax(1) == dataset.splits["test"][1])
                                                            .float().mean()))
    assert results["per_sigma"][0]["ekl"] == 0 and results["per_sigma"][1]["ekl"] > 0  # chips differ from clean
    recurrent = evaluate(model, x, dataset.splits["test"][1], [0.2], runs=3, progress=False)
    assert recurrent["per_sigma"][0]["accuracy"]["per_run"] == noisy["per_run"]


def test_irs_taps_a_recurrent_module_by_its_output_sequence(tmp_path):
    from neft.models import registry
    from neft.training import objectives

    (tmp_path / "nets.py").write_text(NETS)
    model = registry.build(f"{tmp_path / 'nets.py'}:RowLSTM", 10, 1)
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    irs = objectives.create("irs", model, x, 10, sigma=0.1, beta=0.01, taps=[("lstm", 4)], generator=make_generator(0))
    assert irs.modules()[0].in_features == 32 * 4  # (output [B, 32 steps, 16]) pooled to 4 per step
    loss, logs = irs.loss(model, x, y)
    loss.backward()
    assert model.lstm.weight_hh_l1.grad is not None and "head1_acc" in logs


@pytest.mark.parametrize("setting", [{"read_sigma": 0.05}, {"adc_bits": 6}])
def test_circuit_settings_on_a_recurrent_model_are_one_error_naming_the_setting(setting):
    """The crossbar circuit runs Conv/Linear layers only: an active setting on a model with recurrent weights on
    the crossbar is refused before any work, naming the setting; with the circuit off the same model evaluates."""
    from neft.common.errors import SettingError

    torch.manual_seed(0)
    model = nn.Sequential(Attention(separate=False), nn.Linear(6, 3))
    x, y = torch.randn(20, 4, 6), torch.randint(0, 3, (20,))
    name = next(iter(setting))
    with pytest.raises(SettingError, match=f"{name} is set, but the crossbar circuit .* MultiheadAttention"):
        evaluate(model, x, y, [0.1], runs=2, progress=False, calibration_images=x, **setting)
    plain = evaluate(model, x, y, [0.1], runs=2, progress=False)
    assert plain["per_sigma"][0]["runs"] == 2
