"""Distillation teachers protected and pinned (docs/method.md, 'Other answers to device variation'): never deleted
by their own student, refused when unfinished, and pinned by their checkpoint's digest on resume, wherever the
folder has moved."""

import json
import shutil

import pytest

from neft.cli.main import main
from neft.common.errors import SettingError
from neft.store import checkpoint
from neft.training import TrainConfig, train

TINY = dict(model="lenet5", epochs=1, train_subset=64, test_subset=32, val_runs=1, init="torch")


def _teacher(path):
    train(TrainConfig(method="vanilla", sigma=0.0, **TINY), path, progress=False)
    return path


def _student(teacher, **settings):
    return TrainConfig(method="distill", sigma=0.2, teacher=str(teacher), **{**TINY, **settings})


def test_a_student_never_replaces_its_teacher(tmp_path, capsys):
    teacher = _teacher(tmp_path / "grid" / "vanilla")
    before = sorted(p.name for p in teacher.iterdir())
    for out in (teacher, tmp_path / "grid"):  # the teacher itself, or a folder holding it
        with pytest.raises(SettingError, match="is \\(or holds\\) the teacher") as error:
            train(_student(teacher), out, overwrite=True, progress=False)
        assert error.value.setting == "teacher"
    assert main(["train", "--model", "lenet5", "--method", "distill", "--teacher", str(teacher), "--epochs", "1",
                 "--out", str(teacher), "--overwrite", "--quiet"]) == 2
    assert "argument --teacher: " in capsys.readouterr().err
    assert sorted(p.name for p in teacher.iterdir()) == before


def test_an_unfinished_teacher_is_refused(tmp_path):
    teacher = tmp_path / "vanilla"
    train(TrainConfig(method="vanilla", sigma=0.0, **{**TINY, "epochs": 2}), teacher, progress=False, stop_after=1)
    with pytest.raises(SettingError, match="trained 1 of its 2 epochs") as error:
        _student(teacher).check()
    assert error.value.setting == "teacher"


def test_the_teacher_is_pinned_by_digest_and_may_move(tmp_path):
    teacher = _teacher(tmp_path / "a" / "vanilla")
    student = tmp_path / "a" / "student"
    train(_student(teacher, epochs=3), student, progress=False, stop_after=1)
    recorded = json.loads((student / "config.json").read_text())["recorded"]["teacher"]
    assert recorded["sha256"] == checkpoint.digest(teacher) and len(recorded["sha256"]) == 64
    assert checkpoint.load_checkpoint(student)[1]["teacher_sha256"] == recorded["sha256"]
    shutil.move(tmp_path / "a", tmp_path / "b")  # the grid folder moved: another spelling of the same teacher
    moved_teacher, moved_student = tmp_path / "b" / "vanilla", tmp_path / "b" / "student"
    train(_student(moved_teacher, epochs=3), moved_student, resume=True, progress=False, stop_after=2)
    train(TrainConfig(method="vanilla", sigma=0.0, seed=1, **TINY), moved_teacher, overwrite=True,
          progress=False)  # the teacher retrained: another network in the same place
    with pytest.raises(ValueError, match="is not the network it started from"):
        train(_student(moved_teacher, epochs=3), moved_student, resume=True, progress=False)
