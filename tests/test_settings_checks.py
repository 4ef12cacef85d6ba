"""Every setting checked before any work: booleans, float32 overflow, sweeps and file collisions, and a command-line
fuzz of bad inputs that must each end in exit 2 with one ``neft: error:`` line and nothing written."""

import json
from pathlib import Path

import pytest
import torch

from neft import runs
from neft.chip import DeviceModel, check_sigma, devices
from neft.cli.main import main
from neft.common.errors import FLOAT32_MAX, SettingError, check_number
from neft.evaluation import montecarlo, parse_sigmas
from neft.training import TrainConfig

# ---- item 1 in Python: booleans are no numbers, float32 overflow is infinite --------------------------------------

@pytest.mark.parametrize("build, setting", [
    (lambda: TrainConfig(method="ovf", beta=True), "beta"),
    (lambda: TrainConfig(temperature=True), "temperature"),
    (lambda: TrainConfig(lr=True), "lr"),
    (lambda: TrainConfig(width=True), "width"),
    (lambda: TrainConfig(sigma=True), "sigma"),
    (lambda: TrainConfig(method="rcg", censor_k=True), "censor_k"),
    (lambda: TrainConfig(method="ovf", beta=1e39), "beta"),
    (lambda: TrainConfig(temperature=3.5e38), "temperature"),
    (lambda: TrainConfig(lr=10**400), "lr"),
    (lambda: TrainConfig(method="lipschitz", lipschitz_lambda=1e39), "lipschitz_lambda"),
    (lambda: TrainConfig(seed=2**63), "seed"),
    (lambda: TrainConfig(validation=True), "validation"),
    (lambda: montecarlo.EvalConfig(ci_target=True), "ci_target"),
    (lambda: montecarlo.EvalConfig(ci_target=1e39), "ci_target"),
    (lambda: montecarlo.EvalConfig(compile=1), "compile"),
    (lambda: montecarlo.EvalConfig(compile=0), "compile"),
    (lambda: montecarlo.EvalConfig(sigmas=[True]), "sigmas"),
    (lambda: montecarlo.EvalConfig(sigmas=True), "sigmas"),
    (lambda: montecarlo.EvalConfig(verified_sigma=True), "verified_sigma"),
    (lambda: montecarlo.EvalConfig(read_sigma=False), "read_sigma"),
    (lambda: montecarlo.EvalConfig(seed=2**64), "seed"),
    (lambda: montecarlo.EvalConfig(sigmas="0:1:1e-9"), "sigmas"),
    (lambda: montecarlo.EvalConfig(sigmas=[0.1, 0.1000001]), "sigmas"),
])
def test_python_settings_refuse_booleans_overflow_and_collisions(build, setting):
    with pytest.raises(SettingError) as error:
        build().check()
    assert error.value.setting == setting


@pytest.mark.parametrize("fields, setting", [
    ({"state_factor": True}, "state_factor"), ({"band": (False, 0.5)}, "band"), ({"levels": [1.0, True]}, "levels"),
    ({"levels": [float("nan")]}, "levels"), ({"weight_bits": 1024, "device_bits": 2}, "weight_bits"),
    ({"device_bits": True}, "device_bits"), ({"read_sigma": True}, "read_sigma"),
    ({"state_factor": 1e39}, "state_factor"),
])
def test_device_models_refuse_booleans_and_overflow(fields, setting, tmp_path):
    with pytest.raises(SettingError) as error:
        DeviceModel(**fields)
    assert error.value.setting == setting
    file = tmp_path / "chip.json"  # the same from a device file
    file.write_text(json.dumps(fields))
    with pytest.raises(SettingError):
        devices.get(str(file))


def test_number_checks_keep_valid_values():
    assert check_number("x", 3, "a number") == 3.0 and isinstance(check_number("x", 3, "a number"), float)
    assert check_number("x", FLOAT32_MAX, "a number") == FLOAT32_MAX
    assert check_sigma(0.4) == 0.4 and DeviceModel(state_factor=2, band=[0, 1]).band == (0.0, 1.0)
    assert TrainConfig(method="ovf", beta=0, lr=1, width=2).check().beta == 0.0
    assert parse_sigmas([0.1, 0.1, 0.2]) == [0.1, 0.2]  # the same sigma twice is one point
    assert montecarlo.EvalConfig(compile=True).check().compile is True


def test_write_verify_sweep_names_collide_up_front():
    assert runs.sweep_names("results", write_verify=[0.0, 0.05], drift_time=[None]) == [
        ("results_wv0", {"write_verify": 0.0, "drift_time": None}),
        ("results_wv0.05", {"write_verify": 0.05, "drift_time": None})]
    assert [name for name, _ in runs.sweep_names("r", write_verify=[0.1], drift_time=[1, 3600])] == ["r_t1", "r_t3600"]
    for fractions in ([0.1, 0.1], [0.1, 0.1000001]):
        with pytest.raises(SettingError, match="would both write results_wv0.1.json") as error:
            runs.sweep_names("results", write_verify=fractions)
        assert error.value.setting == "write_verify"
    with pytest.raises(SettingError, match="would both write results_t3600.json") as error:
        runs.sweep_names("results", write_verify=[0.0], drift_time=[3600, 3600.0000001])
    assert error.value.setting == "drift_time"


def test_a_sweep_is_checked_whole_before_its_first_evaluation(run_dir, capsys):
    before = sorted(p.name for p in run_dir.iterdir())
    (run_dir / "results_wv0.5.json").write_text("{}")  # the second file of the sweep exists
    try:
        assert main(["evaluate", str(run_dir), "--quiet", "--runs", "2", "--write-verify", "0,0.5"]) == 2
        assert "results_wv0.5.json' already exists" in capsys.readouterr().err
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(before + ["results_wv0.5.json"])
    finally:
        (run_dir / "results_wv0.5.json").unlink()


# ---- the command-line fuzz ----------------------------------------------------------------------------------------

PRESET = """
[experiment]
methods = ["vanilla", "ovf"]
train_sigmas = [0.2]
seeds = [0]
[train]
model = "lenet5"
epochs = 1
train_subset = 64
test_subset = 32
[evaluate]
runs = 2
"""


def _preset(tmp_path, replace=()):
    """The preset above, with its grid in RUNS/grid and ``replace`` (old, new) edits."""
    text = PRESET.replace("[experiment]", f'[experiment]\nout = "{tmp_path / "RUNS" / "grid"}"')
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "preset.toml"
    path.write_text(text)
    return str(path)


def _device_file(tmp_path, text):
    path = tmp_path / "chip.toml"
    path.write_text(text)
    return str(path)


def _results_dir(tmp_path, edit):
    """A run folder holding a valid results.json with ``edit`` ("per_sigma.0.runs=-3", a JSON value) applied."""
    point = {"sigma": 0.1, "runs": 2, "accuracy": {"mean": 90.0, "std": 1.0, "ci95": 1.4, "min": 89.0},
             "ekl": 0.01, "ekl_x1e2": 1.0, "confidence": 0.9}
    data = {"schema_version": 3, "method": "ovf", "train_sigma": 0.1, "train_seed": 0, "test_size": 100,
            "per_sigma": [point]}
    if edit:
        path, value = edit.split("=", 1)
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = json.loads(value)
    folder = tmp_path / "RUNS" / "evaluated"
    folder.mkdir(exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data))
    return str(folder)


TRAIN = ["train", "--model", "lenet5", "--epochs", "1", "--train-subset", "64", "--quiet", "--out", "RUNS/new"]
EVALUATE = ["evaluate", "RUN", "--quiet", "--runs", "2"]

FUZZ = [
    # train: every value refused before the run directory is made
    (TRAIN + ["--sigma", "nan"], "--sigma"),
    (TRAIN + ["--sigma", "1.5"], "--sigma"),
    (TRAIN + ["--method", "ovf", "--beta", "1e39"], "--beta"),
    (TRAIN + ["--method", "ovf", "--beta", "-1"], "--beta"),
    (TRAIN + ["--temperature", "1e39"], "--temperature"),
    (TRAIN + ["--temperature", "0"], "--temperature"),
    (TRAIN + ["--lr", "1e39"], "--lr"),
    (TRAIN + ["--lr", "-0.1"], "--lr"),
    (TRAIN + ["--lr", "-1e-3"], "argument --lr: lr must be"),  # a negative number in scientific notation is a value
    (TRAIN + ["--tile-rows", "64", "--wire-resistance", "-1e-4"], "argument --wire-resistance: wire_resistance must"),
    (["evaluate", "RUN", "--sigmas", "-0.1,0.2"], "argument --sigmas: sigmas must be a finite number >= 0"),
    (["evaluate", "RUN", "--device-model", "aihwkit-inference", "--adc-mode", "sliced"],
     "the chip preset aihwkit-inference sets out_noise = 0.06: out_noise runs with adc_mode 'analog' only"),
    (TRAIN + ["--width", "1e39"], "--width"),
    (TRAIN + ["--width", "0"], "--width"),
    (TRAIN + ["--method", "rcg", "--censor-k", "1e39"], "--censor-k"),
    (TRAIN + ["--method", "lipschitz", "--lipschitz-lambda", "inf"], "--lipschitz-lambda"),
    (TRAIN + ["--method", "distill", "--teacher", "RUN", "--distill-alpha", "1.5"], "--distill-alpha"),
    (TRAIN + ["--method", "distill", "--teacher", "RUN", "--distill-temperature", "1e39"], "--distill-temperature"),
    (TRAIN + ["--method", "distill"], "--teacher"),
    (TRAIN + ["--method", "distill", "--teacher", "RUNS/missing"], "--teacher"),
    (TRAIN + ["--seed", str(2**63)], "--seed"),
    (TRAIN + ["--seed", "-1"], "--seed"),
    (TRAIN + ["--validation", "1"], "--validation"),
    (TRAIN + ["--epochs", "0"], "--epochs"),
    (TRAIN + ["--batch-size", "0"], "--batch-size"),
    (TRAIN + ["--val-runs", "0"], "--val-runs"),
    (TRAIN + ["--method", "irs", "--sigma-block", "-0.1"], "--sigma-block"),
    (TRAIN + ["--device-model", "DEVICE:state_factor = true"], "state_factor"),
    (TRAIN + ["--device-model", "DEVICE:weight_bits = 4096\ndevice_bits = 2"], "weight_bits"),
    (TRAIN + ["--device-model", "DEVICE:band = [true, 0.5]"], "band"),
    (TRAIN + ["--device-model", "NOPE"], "--device-model"),
    (TRAIN + ["--taps", "features.0:x"], "--taps"),
    (TRAIN + ["--taps", "features.0"], "argument --taps: taps are the snapshot points of IRS"),  # noise-injection
    (TRAIN + ["--drift-time", "3600"], "argument --drift-time: drift_time 3600 s has no effect"),
    (TRAIN + ["--adc-mode", "sliced"], "argument --adc-mode: adc_mode 'sliced'"),
    (TRAIN + ["--device-model", "DEVICE:quantize = true\nstuck_on = 2"], "chip.toml': stuck_on is"),
    # a bad setting is named before the run directory that already exists
    (["train", "--method", "irs", "--taps", "nope", "--epochs", "1", "--quiet", "--out", "RUN"], "name no module"),
    # evaluate: the whole sweep and every output file checked before the first chip
    (EVALUATE + ["--sigmas", "0,0.1,0.1000001"], "--sigmas"),
    (EVALUATE + ["--sigmas", "0:1:1e-9"], "--sigmas"),
    (EVALUATE + ["--sigmas", "nan"], "--sigmas"),
    (EVALUATE + ["--sigmas", "0,1e39"], "--sigmas"),
    (EVALUATE + ["--runs", "1"], "--runs"),
    (EVALUATE + ["--ci-target", "1e39"], "--ci-target"),
    (EVALUATE + ["--ci-target", "0"], "--ci-target"),
    (EVALUATE + ["--seed", str(2**64)], "--seed"),
    (EVALUATE + ["--write-verify", "0.1,0.1"], "--write-verify"),
    (EVALUATE + ["--write-verify", "0.1,0.1000001"], "--write-verify"),
    (EVALUATE + ["--write-verify", "0,1.5"], "--write-verify"),
    (EVALUATE + ["--write-verify", "0,0.1", "--name", "../up"], "--name"),
    (EVALUATE + ["--quantize", "--drift-nu-mean", "0.05", "--drift-times", "3600,3600.0000001"], "--drift-times"),
    (EVALUATE + ["--quantize", "--drift-nu-mean", "0.05", "--drift-times", "1e39"], "--drift-times"),
    (EVALUATE + ["--verified-sigma", "2"], "--verified-sigma"),
    (EVALUATE + ["--device-model", "DEVICE:state_factor = 9.0\n[device]\nquantize = true"],
     "has keys both at top level (state_factor) and in a [device] table"),  # not the table alone, silently
    (EVALUATE + ["--device-model", "DEVICE:weight_bits = 6\ndevice_bits = 4"],
     "argument --device-model: device model file"),  # the file named, for a value error too
    (EVALUATE + ["--quantize", "--drift-compensation"], "drift_compensation rescales drifted conductances"),
    (EVALUATE + ["--label", "   "], "argument --label: label must be a non-empty line of text"),
    (EVALUATE + ["--device-model", 'DEVICE:name = "RRAM1"\nstate_factor = 5'],
     "argument --device-model: device model file"),  # a preset's name, other values
    (EVALUATE + ["--label", "a\nb"], "no line breaks or control characters"),  # it would split report rows
    (EVALUATE + ["--name", "config", "--overwrite"], "would replace the run's own config.json/.csv"),
    (EVALUATE + ["--name", "train_log", "--overwrite"], "would replace the run's own train_log.json/.csv"),
    (EVALUATE + ["--drift-times", "1,3600"], "argument --drift-times: drift_time 1 s has no effect"),  # RRAM1
    (EVALUATE + ["--adc-range", "99"], "argument --adc-range: adc_range 99 sets the full scale a converter calibrates"),
    (EVALUATE + ["--device-model", "DEVICE:quantize = true\ndrift_time = 3600"],
     "chip.toml': drift_time 3600 s has no effect"),  # the file, not --drift-times, set it
    (EVALUATE + ["--read-sigma", "-1"], "--read-sigma"),
    (EVALUATE + ["--batch-size", "0"], "--batch-size"),
    (EVALUATE + ["--test-subset", "0"], "--test-subset"),
    (EVALUATE + ["--device-model", "DEVICE:levels = [1.0, 0.0]"], "levels"),
    (EVALUATE + ["--device-model", "DEVICE:read_sigma = true"], "read_sigma"),
    (["evaluate", "RUNS/missing", "--quiet", "--runs", "2"], "no checkpoint"),
    # reproduce: the preset checked whole before any cell
    (["reproduce", "PRESET:train_sigmas = [0.2]|train_sigmas = [0.2, 0.2000001]"], "train_sigmas"),
    (["reproduce", "PRESET:seeds = [0]|seeds = [0, 0]"], "seeds"),
    (["reproduce", "PRESET:train_sigmas = [0.2]|train_sigmas = [true]"], "train_sigmas"),
    (["reproduce", "PRESET:runs = 2|runs = true"], "runs"),
    (["reproduce", "PRESET:runs = 2|runs = 2\nsweep = 1"], "sweep"),
    (["reproduce", "PRESET:runs = 2|runs = 2\ncompile = 1"], "compile"),
    (["reproduce", "PRESET:runs = 2|runs = 2\nsigmas = [true]"], "sigmas"),
    (["reproduce", "PRESET:runs = 2|runs = 2\nci_target = 1e39"], "ci_target"),
    (["reproduce", "PRESET:epochs = 1|epochs = 1\nwidth = true"], "width"),
    (["reproduce", "PRESET:epochs = 1|epochs = 1\nbeta_ovf = 1e39"], "beta"),
    (["reproduce", "PRESET:epochs = 1|epochs = 1\nseed = 3"], "unknown key"),
    (["reproduce", "RUNS/none.toml"], "not found"),
    (["reproduce", 'PRESET:epochs = 1|epochs = 1\ntaps = ["features.0"]'], "[train] taps are the snapshot points"),
    (["reproduce", "PRESET:train_sigmas = [0.2]\n|"], "e.g. train_sigmas = [0.1, 0.2]"),  # names the missing key
    (["reproduce", 'PRESET:"vanilla", "ovf"|"vanilla", "distill"'], '[train] teacher = "vanilla"'),
    (["reproduce", 'PRESET:"vanilla", "ovf"|"vanilla", "ovf gamma=2"'],
     "T, beta, init, k, scale, lambda, alpha, device"),
    (["reproduce", 'PRESET:"vanilla", "ovf"|"vanilla", "ofv"'],
     "T=..., beta=..., init=..., k=..., scale=..., lambda=..., alpha=..., device=..."),
    (["reproduce", 'PRESET:"vanilla", "ovf"|"vanilla", "distill", "distill alpha=0.9"&&[train]|[train]\nteacher = '
                   '"vanilla"'], "train the same networks"),
    (["reproduce", 'PRESET:"vanilla", "ovf"|"vanilla", "rcg", "rcg k=1.0"'], "train the same networks"),
    (["reproduce", "PRESET:", "--parallel", "0"], "--parallel"),
    (["reproduce", "PRESET:", "--shard", "2/2"], "--shard"),
    # report: every input refused before the report folder is made
    (["report", "RUNS/missing"], "does not exist"),
    (["report", "RESULT:per_sigma.0.accuracy.mean=150", "--out", "RUNS/report"], "per_sigma[0].accuracy.mean"),
    (["report", "RESULT:per_sigma.0.accuracy.mean=NaN", "--out", "RUNS/report"], "per_sigma[0].accuracy.mean"),
    (["report", "RESULT:per_sigma.0.sigma=-0.1", "--out", "RUNS/report"], "per_sigma[0].sigma"),
    (["report", "RESULT:per_sigma.0.runs=-3", "--out", "RUNS/report"], "per_sigma[0].runs"),
    (["report", "RESULT:per_sigma=[]", "--out", "RUNS/report"], "field per_sigma"),
    (["report", "RESULT:test_size=true", "--out", "RUNS/report"], "field test_size"),
    (["report", "RESULT:", "--labels", "a", "b", "--out", "RUNS/report"], "label"),
    (["report", "RESULT:", "--out", "RUNS/old"], "report.md' already exists; replace the report with"),
]


def _expand(argv, tmp_path, run_dir):
    """Fill the placeholders of a fuzz case: RUN (the trained run), RUNS/ (a fresh folder), DEVICE:text (a device
    file), PRESET:old|new&&old|new (the preset, edited), RESULT:field=value (a results.json, edited)."""
    expanded = []
    for arg in argv:
        if arg == "RUN":
            arg = str(run_dir)
        elif arg.startswith("RUNS/"):
            arg = str(tmp_path / arg)
            if arg.endswith("old"):  # a folder holding an earlier report
                Path(arg).mkdir()
                (Path(arg) / "report.md").write_text("# an earlier report\n")
        elif arg.startswith("DEVICE:"):
            arg = _device_file(tmp_path, arg[len("DEVICE:"):])
        elif arg.startswith("RESULT:"):
            arg = _results_dir(tmp_path, arg[len("RESULT:"):])
        elif arg.startswith("PRESET:"):
            edit = arg[len("PRESET:"):]
            arg = _preset(tmp_path, [tuple(part.split("|")) for part in edit.split("&&")] if edit else ())
        expanded.append(arg)
    return expanded


def _tree(*folders):
    return {str(p): p.stat().st_mtime_ns for folder in folders for p in sorted(folder.rglob("*"))}


def _fuzz(argv, expected, tmp_path, run_dir, capsys, monkeypatch):
    (tmp_path / "RUNS").mkdir()
    monkeypatch.chdir(tmp_path / "RUNS")
    argv = _expand(argv, tmp_path, run_dir)
    before = _tree(tmp_path / "RUNS", run_dir)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("neft: error: "), captured.err
    assert expected in lines[0] and "Traceback" not in captured.err + captured.out
    assert _tree(tmp_path / "RUNS", run_dir) == before  # nothing written, nothing touched


@pytest.mark.parametrize("argv, expected", FUZZ, ids=[f"{case[0][0]}-{i}" for i, case in enumerate(FUZZ)])
def test_cli_fuzz_bad_input_is_one_error_line_and_nothing_written(argv, expected, tmp_path, run_dir, capsys,
                                                                  monkeypatch):
    _fuzz(argv, expected, tmp_path, run_dir, capsys, monkeypatch)


def test_the_fuzz_covers_every_command_with_forty_cases():
    commands = [case[0][0] for case in FUZZ]
    assert len(FUZZ) >= 40 and {"train", "evaluate", "report", "reproduce"} <= set(commands)


@pytest.mark.parametrize("settings, setting", [({"parallel": True}, "parallel"), ({"cells_per_device": True},
                                                                                   "cells_per_device")])
def test_grid_process_counts_refuse_booleans(settings, setting, tmp_path):
    from neft.experiments.grid import reproduce

    with pytest.raises(SettingError) as error:
        reproduce(_preset(tmp_path), **settings)
    assert error.value.setting == setting and not (tmp_path / "RUNS").exists()


@pytest.mark.parametrize("argv, expected", [
    (["evaluate", "RUN", "--stuck-on", "abc"], "argument --stuck-on: invalid float value: 'abc'"),
    (["train", "--drift-time", "1,2"], "argument --drift-time: invalid float value: '1,2'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_a_flag_of_the_wrong_type_is_one_error_line_too(argv, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith(f"neft: error: {expected}")
    assert "--help` lists the flags" in err and "usage:" not in err


@pytest.mark.parametrize("argv, file, content, expected", [
    (TRAIN + ["--device-model", "FILE"], "lab.json", b'{"name": "lab", "state_factor": 2, "state_factor": 4}',
     "FILE' gives the key(s) state_factor more than once"),
    (EVALUATE + ["--device-model", "FILE"], "lab.json", b'{"device": {"name": "lab", "name": "other"}}',
     "gives the key(s) name more than once"),
    (EVALUATE + ["--device-model", "FILE"], "lab.toml", b'name = "lab\xff"\n', "FILE' is not UTF-8 text"),
    (EVALUATE + ["--device-model", "FILE"], "lab.json", b'\xff\xfe{}', "FILE' is not UTF-8 text"),
    (EVALUATE + ["--device-model", "FILE"], "lab.toml", b"state_factor = = 2\n",
     "cannot parse device model file 'FILE'"),
    (EVALUATE + ["--device-model", "FILE"], "lab.json", b"[1, 2]", "FILE' holds list [1, 2], not a table"),
    (EVALUATE + ["--device-model", "FILE"], "lab.toml", b"device = 5\n", "FILE' holds int 5, not a table"),
    (EVALUATE + ["--device-model", "FILE"], "lab.toml", b'name = "lab\\u001b[31m"\n',
     "argument --device-model: device model file 'FILE': name must be a non-empty line of text"),  # not --name
    (TRAIN + ["--sigma", "0.5", "--device-model", "FILE"], "lab.toml", b"levels = [1.0, 3.0]\n",
     "at sigma 0.5 its levels table gives a state the relative std 0.5 x 3 = 1.5, above 1"),
    (EVALUATE + ["--sigmas", "0,0.4", "--device-model", "FILE"], "lab.toml", b"levels = [1.0, 3.0]\n",
     "levels <= 2.5"),
    (EVALUATE + ["--read-sigma", "0.5", "--device-model", "FILE"], "lab.toml", b"levels = [1.0, 3.0]\n",
     "at read_sigma 0.5"),
])
def test_device_files_undecodable_duplicated_or_out_of_range_are_one_error(argv, file, content, expected, tmp_path,
                                                                          run_dir, capsys, monkeypatch):
    (tmp_path / file).write_bytes(content)
    argv = [str(tmp_path / file) if arg == "FILE" else arg for arg in argv]
    _fuzz(argv, expected.replace("FILE", str(tmp_path / file)), tmp_path, run_dir, capsys, monkeypatch)


IMPORT = ["import", "--model", "lenet5", "--weights", "RUN/checkpoint.pt", "--dataset", "mnist-5k"]


@pytest.mark.parametrize("argv, expected", [
    (TRAIN[:-1] + ["RUNS/new\nrun"], "argument --out: out must be a non-empty line of text"),
    (TRAIN[:-1] + ["RUNS/new\x1b[2Jrun"], "control characters"),
    (EVALUATE + ["--name", "results\rx"], "argument --name: name must be a non-empty line of text"),
    (EVALUATE + ["--label", "ovf\x00"], "argument --label: label must be"),
    (["report", "RESULT:", "--labels", "ovf\nvanilla", "--out", "RUNS/report"], "labels must be a non-empty line"),
    (["report", "RESULT:", "--title", "a\x07", "--out", "RUNS/report"], "argument --title: title must be"),
    (["report", "RESULT:", "--out", "RUNS/rep\x1bort"], "out_dir must be a non-empty line of text"),
    (["report", "RESULT:", "--out", "RUNS/a\nb"], "out_dir must be a non-empty line of text"),
    (IMPORT + ["--out", "RUNS/a\tb"], "argument --out: out must be"),
    (IMPORT + ["--out", "RUNS/ok", "--label", "x\ny"], "argument --label: label must be"),
])
def test_names_with_control_characters_are_refused(argv, expected, tmp_path, run_dir, capsys, monkeypatch):
    argv = [str(run_dir / "checkpoint.pt") if arg == "RUN/checkpoint.pt" else arg for arg in argv]
    _fuzz(argv, expected, tmp_path, run_dir, capsys, monkeypatch)


def test_a_levels_table_is_bounded_like_sigma_in_python():
    from neft.chip.device_model import DeviceModel

    lab = DeviceModel(name="lab", levels=(1.0, 4.0))
    assert lab.std(torch.tensor([0.1, 1.0]), 0.25).tolist() == pytest.approx([0.25 * lab.bit_factor,
                                                                              0.25 * lab.bit_factor * 4.0])
    with pytest.raises(SettingError) as error:
        lab.std(torch.tensor([0.1, 1.0]), 0.3)
    assert error.value.setting == "levels" and "0.3 x 4 = 1.2, above 1" in str(error.value)
    with pytest.raises(SettingError, match="name must be a non-empty line of text"):
        DeviceModel(name="lab\n2")


def test_flags_are_taken_whole_not_abbreviated(capsys):
    """`--out-n 0` is not `--out-noise 0`: which flags were written decides what a chip preset leaves alone, and an
    abbreviation would be read as written by the main parser but not found among the written flags."""
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "RUN", "--device-model", "aihwkit-inference", "--out-n", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unrecognized arguments: --out-n 0" in err


def test_parsed_flags_without_a_command_line_count_as_written_where_not_at_their_defaults():
    from neft.cli import build_parser
    from neft.cli.chip_arguments import circuit_settings

    args = build_parser().parse_args(["evaluate", "RUN", "--out-noise", "0.1", "--adc-bits", "6"])  # no main()
    assert circuit_settings(args, given=True) == {"out_noise": 0.1, "adc_bits": 6}


def test_a_read_time_without_a_device_model_waits_for_the_runs_model():
    """`neft evaluate RUN --drift-times 3.15e7` on a run trained on a drifting preset was refused ("has no effect")
    because the read time was checked against a default model before the run's was known."""
    from neft.evaluation import EvalConfig

    assert EvalConfig(drift_time=3.15e7).check().drift_time == 3.15e7
    with pytest.raises(SettingError, match="drift_time must be a time"):
        EvalConfig(drift_time=-5).check()
    with pytest.raises(SettingError, match="has no effect"):  # the model known: the check is made
        EvalConfig(device_model="RRAM1", drift_time=3.15e7).check()
    assert EvalConfig(device_model="PCM-aihwkit", drift_time=3.15e7).check().chip().device_model.drift_time == 3.15e7
