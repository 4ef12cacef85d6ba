"""Reports a reader can trust at a glance (docs/results.md, 'Report files'): device models named in plots, the
legend outside the panels, a worst-case panel, honest seed comparisons and run counts, clean validation at sigma 0,
IRS head accuracy explained."""

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
