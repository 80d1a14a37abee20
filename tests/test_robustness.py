"""Robustness: resume after a kill, determinism, DDP, bad input from the command line, atomic results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nnzoo.cli import main
from nnzoo.errors import NnzooError
from nnzoo.io import write_json
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import params_to_state_dict
from tests.conftest import random_params, tiny_fit_args

NNZOO = str(Path(sys.executable).parent / "nnzoo")
REPO = Path(__file__).resolve().parent.parent


def _metrics(run_dir: Path) -> dict:
    (path,) = run_dir.glob("*/version_*/metrics.json")
    return json.loads(path.read_text())


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_same_seed_same_metrics(tiny_inr_root, nnzoo_home, tmp_path):
    results = []
    for name in ("a", "b"):
        assert main(tiny_fit_args(tiny_inr_root, tmp_path / name)) == 0
        results.append(_metrics(tmp_path / name))
    for key in ("test/loss", "test/acc", "best_val/acc", "steps"):
        assert results[0][key] == results[1][key], key
    assert main(tiny_fit_args(tiny_inr_root, tmp_path / "c", "seed=1")) == 0
    assert _metrics(tmp_path / "c")["test/loss"] != results[0]["test/loss"], "the seed must matter"


def test_killed_fit_resumes_from_its_last_checkpoint(tiny_inr_root, nnzoo_home, tmp_path):
    run_dir = tmp_path / "runs"
    args = tiny_fit_args(tiny_inr_root, run_dir, "trainer.max_epochs=1000")
    env = {**os.environ, "NNZOO_HOME": str(nnzoo_home)}
    proc = subprocess.Popen([NNZOO, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    last = run_dir / "mnist_inr-gnn" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    try:
        while not last.is_file():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint written within 4 minutes"
            time.sleep(0.5)
        time.sleep(2.0)  # let it train on past the first checkpoint
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (last.parent.parent / "metrics.json").exists(), "a killed run must not look finished"
    saved_epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]

    resumed_epochs = saved_epoch + 3
    assert main([*args, "resume=true", f"trainer.max_epochs={resumed_epochs}"]) == 0
    metrics = _metrics(run_dir)
    assert metrics["run_dir"].endswith("version_0"), "resume continues the same run folder"
    assert metrics["epochs"] == resumed_epochs
    assert metrics["steps"] == resumed_epochs * 3  # 48 training INRs / batch 16
    assert "test/acc" in metrics


def test_resume_without_a_checkpoint_is_one_line(tiny_inr_root, tmp_path, capsys):
    assert main(tiny_fit_args(tiny_inr_root, tmp_path, "resume=true")) == 2
    assert "last.ckpt" in _one_error_line(capsys)


def test_ddp_on_two_cpu_processes(tiny_inr_root, nnzoo_home, tmp_path):
    """Lightning's own DDP (gloo on CPU): two ranks, one run folder, the same metrics as one process."""
    args = tiny_fit_args(tiny_inr_root, tmp_path / "ddp", "--trainer", "ddp")
    env = {**os.environ, "NNZOO_HOME": str(nnzoo_home)}
    env.pop("NNZOO_RUN_VERSION", None)
    out = subprocess.run([NNZOO, *args], env=env, capture_output=True, text=True, timeout=420)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in out.stderr + out.stdout or "world_size=2" in (out.stderr + out.stdout).replace(
        " ", ""), "expected two ranks"
    ddp = _metrics(tmp_path / "ddp")
    assert main(tiny_fit_args(tiny_inr_root, tmp_path / "single")) == 0
    single = _metrics(tmp_path / "single")
    assert set(ddp) == set(single)
    assert ddp["epochs"] == single["epochs"]
    assert ddp["steps"] == 2 * 2  # each rank sees half of the 3 batches per epoch: ceil(24/16) = 2 steps
    assert 0.0 <= ddp["test/acc"] <= 1.0


# ------------------------------------------------------------------ bad input, from the command line
def _copy_dataset(src: Path, dst: Path) -> tuple[Path, Path]:
    shutil.copytree(src, dst)
    first = json.loads((dst / "mnist_splits.json").read_text())["train"]["path"][0]
    return dst, dst / first


def _corrupt(file: Path) -> None:
    file.write_bytes(b"\x00garbage" * 10)


def _wrong_architecture(file: Path) -> None:
    torch.save(params_to_state_dict(random_params(siren_spec((2, 16, 16, 1)), 1)[0],
                                    siren_spec((2, 16, 16, 1))), file)


def _nan_weights(file: Path) -> None:
    sd = torch.load(file, weights_only=True)
    sd["seq.1.weight"][3, 4] = float("nan")
    torch.save(sd, file)


def _inf_weights(file: Path) -> None:
    sd = torch.load(file, weights_only=True)
    sd["seq.0.bias"][0] = float("inf")
    torch.save(sd, file)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/nnzoo_pwned",))


def _pickle_with_code(file: Path) -> None:
    torch.save({"seq.0.weight": _Payload()}, file)


@pytest.mark.parametrize("damage, expected", [(_corrupt, "corrupt"), (_wrong_architecture, "shape"),
                                              (_nan_weights, "NaN"), (_inf_weights, "Inf"),
                                              (_pickle_with_code, "pickled code")])
def test_bad_inr_file_is_one_line_naming_it_and_overwrites_nothing(damage, expected, tiny_inr_root, tmp_path,
                                                                  capsys):
    root, victim = _copy_dataset(tiny_inr_root, tmp_path / "data")
    damage(victim)
    run_dir = tmp_path / "runs"
    previous = run_dir / "mnist_inr-gnn" / "version_0" / "metrics.json"
    write_json(previous, {"test/acc": 0.5})
    before = previous.read_bytes()
    assert main(tiny_fit_args(root, run_dir, f"data.cache_dir={tmp_path / 'cache'}")) == 2
    line = _one_error_line(capsys)
    assert victim.name in line and victim.parent.parent.name in line, line
    assert expected.lower() in line.lower(), line
    assert previous.read_bytes() == before
    assert not Path("/tmp/nnzoo_pwned").exists()


def test_untrusted_checkpoint_is_refused_by_test_and_predict(tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    _pickle_with_code(evil)
    assert main(["test", "--checkpoint", str(evil)]) == 2
    assert "pickled code" in _one_error_line(capsys)
    assert main(["predict", "--checkpoint", str(evil), str(evil)]) == 2
    assert "pickled code" in _one_error_line(capsys)
    assert not Path("/tmp/nnzoo_pwned").exists()


def test_failed_result_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "no temporary files left behind"


def test_nnzoo_errors_are_single_lines():
    with pytest.raises(NnzooError) as info:
        raise NnzooError("first\nsecond")
    assert "\n" not in str(info.value)
