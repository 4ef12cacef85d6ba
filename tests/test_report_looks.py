"""Reports a reader can trust at a glance (docs/results.md, 'Report files'): device models named in plots, the
legend outside the panels, a worst-case panel, honest seed comparisons and run counts, clean validation at sigma 0,
IRS head accuracy explained."""

import json

import pytest
from matplotlib.figure import Figure

from neft import reporting as report
from neft.cli.main import main
from neft.experiments.grid import pooled_results


def result(method, mean, seed=0, device="RRAM4", p5=None):
    point = {"sigma": 0.2, "runs": 50, "accuracy": {"mean": mean, "std": 1.0, "ci95": 0.3, "min": mean - 3,
                                                     "p1": mean - 2.5, "p5": p5 or mean - 2,
                                                     "per_run": [mean] * 50},
             "ekl": 0.01, "ekl_x1e2": 1.0, "confidence": 0.9}
    return {"method": method, "train_sigma": 0.2, "train_seed": seed, "test_size": 100, "num_classes": 10,
            "dataset": "mnist-5k", "device_model": {"name": device}, "run": f"runs/{method}{seed}",
            "per_sigma": [point]}


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the report saves."""
    saved = []
    original = Figure.savefig

    def keep(figure, *args, **kwargs):
        saved.append(figure)
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def test_the_plot_names_the_device_keeps_the_legend_outside_and_shows_the_worst_case(tmp_path, figures):
    report.plot([result("ovf", 90.0), result("noise-injection", 85.0)], tmp_path / "p.png", title="t")
    (figure,) = figures
    panels = figure.get_axes()
    assert [axes.get_title() for axes in panels] == [
        "Accuracy (mean, 95 % CI)", "Worst case: 5th percentile over chips (1st dotted)", "Expected KL divergence"]
    assert all(axes.get_legend() is None for axes in panels) and len(figure.legends) == 1  # below the panels
    texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert texts == ["noise-injection (trained at σ=0.2, on RRAM4)", "ovf (trained at σ=0.2, on RRAM4)"]
    worst = panels[1].get_lines()
    assert [list(line.get_ydata()) for line in worst] == [[83.0], [82.5], [88.0], [87.5]]  # p5 then p1 per label


def test_a_single_run_plot_is_titled_with_its_device_model(tmp_path, figures):
    from neft.runs.evaluate import _write_outputs

    results = {**result("ovf", 90.0), "evaluation": {}}
    _write_outputs(results, [tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.png"], "ovf (run, evaluated on "
                   "RRAM4)")
    assert figures[0]._suptitle.get_text() == "ovf (run, evaluated on RRAM4)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json", "r.png"]


def test_two_seeds_are_not_called_equal_and_pooled_runs_count_networks(tmp_path):
    cells = [result("noise-injection", 80.0 + seed, seed) for seed in (0, 1)]
    cells += [result("ovf", 82.0 + 3 * seed, seed) for seed in (0, 1)]
    text = report.findings(cells)
    assert "do not differ" not in text
    assert "with 2 seeds the interval is too wide to resolve a difference between ovf and noise-injection" in text
    markdown = report.write_report(pooled_results(cells), tmp_path)["markdown"].read_text()
    assert "Monte Carlo runs per point: 50 chips per network x 2 networks = 100;" in markdown


def test_a_run_trained_at_sigma_zero_reports_clean_validation(tmp_path, capsys):
    assert main(["train", "--model", "lenet5", "--method", "vanilla", "--sigma", "0", "--epochs", "1",
                 "--train-subset", "64", "--test-subset", "32", "--val-runs", "1", "--out", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "clean validation" in out and "noisy" not in out


def _swept(method, points, run="runs/a", device=None, **evaluation):
    """A run-directory result of ``method`` at ``points`` ({sigma: mean}) with ``evaluation`` settings."""
    chip = {"name": "PCM-chip", "quantize": True, "drift_nu_mean": 0.06, "drift_nu_std": 0.02, "drift_t0": 20.0,
            "drift_time": evaluation.get("drift_time"), "drift_compensation": True} if device == "PCM" else \
        {"name": "RRAM1"}
    per_sigma = [{"sigma": sigma, "runs": 2, "accuracy": {"mean": mean, "std": 0.0, "ci95": 0.0, "min": mean,
                                                          "p1": mean, "p5": mean, "per_run": [mean, mean]},
                  "ekl": 0.0, "ekl_x1e2": 0.0, "confidence": 0.9} for sigma, mean in points.items()]
    return {"method": method, "train_sigma": 0.2, "train_seed": 0, "test_size": 100, "run": run,
            "device_model": chip, "train_device_model": {"name": chip["name"]}, "per_sigma": per_sigma,
            "evaluation": {"sigmas": sorted(points), "seed": 0, "runs": 2, "write_verify": 0.0,
                           "verify_select": "magnitude", **evaluation}}


def test_each_kind_of_sweep_has_its_own_plot_with_read_times_in_order(tmp_path, figures):
    """A run folder evaluated over sigma, over write-verified fractions (at sigma 0.1, its fraction 0 the same
    evaluation as results.json there) and over read times after programming (one before t0 = 20 s)."""
    run = tmp_path / "run"
    run.mkdir()
    files = {"results": _swept("ovf", {0.0: 90.0, 0.1: 80.0, 0.2: 70.0}),
             "results_wv0": _swept("ovf", {0.1: 80.0}),
             **{f"results_wv{f:g}": _swept("ovf", {0.1: 80.0 + 100 * f}, write_verify=f) for f in (0.05, 0.1)},
             **{f"results_t{t:g}": _swept("ovf", {0.1: 60.0 - t / 1e6}, device="PCM", drift_time=t)
                for t in (3.15e7, 15.0, 3600.0, 86400.0, 1.0)}}
    for name, data in files.items():
        (run / f"{name}.json").write_text(json.dumps({**data, "run": str(run)}))
    paths = report.write_report([run], tmp_path / "out")  # today: "several results for the same point"
    sigma_plot, verify_plot, drift_plot = figures
    legend = [text.get_text() for text in sigma_plot.legends[0].get_texts()]
    assert legend == ["ovf (trained at σ=0.2, on RRAM1)"]  # neither the fractions nor the read times
    assert [list(line.get_xdata()) for line in verify_plot.get_axes()[0].get_lines()[:1]] == [[0.0, 5.0, 10.0]]
    axes = drift_plot.get_axes()[0]
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["1s", "15s", "1h", "1d", "1y"]
    assert list(axes.get_lines()[0].get_xdata()) == [1.0, 15.0, 3600.0, 86400.0, 3.15e7]
    text = paths["markdown"].read_text()
    assert "**Warning: read before the drift reference time t0**: 1s (t0 = 20s), 15s (t0 = 20s)." in text
    devices = text.split("device model: ")[1].split(".\n")[0]
    assert [part.split(" t=")[1].split()[0] for part in devices.split(", ") if " t=" in part] == [
        "1s", "15s", "1h", "1d", "1y"]


def test_twenty_lines_have_twenty_colour_and_marker_pairs(tmp_path, figures):
    results = [{**result("ovf", 50.0 + i, seed=i), "label": f"net{i:02d}"} for i in range(20)]
    report.plot(results, tmp_path / "p.png")
    lines = figures[0].get_axes()[0].get_lines()
    pairs = [(line.get_color(), line.get_marker()) for line in lines if line.get_marker() != "_"]  # no CI caps
    assert len(pairs) == 20 and len(set(pairs)) == 20


def test_a_read_before_t0_is_warned_about_at_evaluation():
    import torch

    from neft.evaluation.montecarlo import evaluate

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images, labels = torch.rand(8, 1, 2, 2), torch.arange(8) % 3
    with pytest.warns(RuntimeWarning, match="drift_time 15 s is before the drift reference time t0 = 20 s"):
        evaluate(model, images, labels, [0.1], runs=2, device_model="PCM-chip", drift_time=15.0, progress=False,
                 compile=False)
