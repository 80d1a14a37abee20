"""``nnzoo predict`` on many files: folders and glob patterns, batches equal to one network at a time, every
file checked before the first prediction, editing in batches (issue 14, item 9). Shipped checkpoints only:
nothing is trained here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from nnzoo.cli import main
from nnzoo.errors import NnzooError
from nnzoo.nets import siren_spec
from nnzoo.nets.functional import params_to_state_dict, siren_init
from nnzoo.inference import edit_files, edit_network, network_files, predict_file, predict_files, read_network
from nnzoo.pretrained import load_pretrained
from tests.conftest import random_params


@pytest.fixture(scope="module")
def inr_folder(tmp_path_factory) -> Path:
    """Seven random SIRENs in the public format, plus what a folder argument must leave out."""
    folder = tmp_path_factory.mktemp("inrs")
    spec = siren_spec()
    for i, flat in enumerate(siren_init(7, spec, torch.Generator().manual_seed(0))):
        torch.save(params_to_state_dict(flat, spec), folder / f"inr_{6 - i}.{'pt' if i == 3 else 'pth'}")
    (folder / "notes.txt").write_text("not a network")
    (folder / "nested").mkdir()
    shutil.copy(folder / "inr_0.pth", folder / "nested" / "inr_9.pth")
    return folder


@pytest.fixture(scope="module")
def classifier():
    return load_pretrained("gnn-mnist_inr")


def _close(batched: list[dict], alone: list[dict]) -> None:
    assert len(batched) == len(alone)
    for b, a in zip(batched, alone):
        if "probabilities" in a:
            assert b["prediction"] == a["prediction"]
            torch.testing.assert_close(torch.tensor(list(b["probabilities"].values())),
                                       torch.tensor(list(a["probabilities"].values())), rtol=1e-4, atol=1e-5)
        else:
            assert b["prediction"] == pytest.approx(a["prediction"], abs=1e-5)


def test_folders_and_patterns_name_the_files_in_sorted_order(inr_folder):
    expected = [str(inr_folder / f"inr_{i}.{'pt' if i == 3 else 'pth'}") for i in range(7)]
    assert network_files([inr_folder]) == expected  # *.pth and *.pt, not notes.txt, not nested/
    assert network_files([str(inr_folder / "inr_*.pth")]) == [f for f in expected if f.endswith(".pth")]
    assert network_files([str(inr_folder / "**" / "inr_9.pth")]) == [str(inr_folder / "nested" / "inr_9.pth")]
    assert network_files([expected[5], inr_folder / "inr_1.pth"]) == [expected[5], expected[1]]  # files as given
    (inr_folder / "nested" / "empty").mkdir(exist_ok=True)
    with pytest.raises(NnzooError, match="holds no network files"):
        network_files([inr_folder / "nested" / "empty"])
    with pytest.raises(NnzooError, match="no file matches the pattern"):
        network_files([str(inr_folder / "*.ckpt")])


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_predictions_equal_one_network_at_a_time(classifier, inr_folder, batch_size):
    files = network_files([inr_folder])
    alone = [predict_file(classifier, Path(f)) for f in files]
    batched = predict_files(classifier, [inr_folder], batch_size=batch_size)
    assert [r["file"] for r in batched] == files
    _close(batched, alone)
    assert len({json.dumps(r["probabilities"]) for r in alone}) == len(alone)  # seven different networks


def test_batches_mixing_architectures_keep_each_network_its_own_result(tmp_path):
    """Wild Park CNNs of four architectures, interleaved: a batch is grouped by architecture for the model,
    and every result must still land on its own file."""
    module = load_pretrained("gnn-cnn_wild_park")
    specs = [s for s in module.info.specs if not any(layer.norm for layer in s.layers)][:4]
    assert len(specs) == 4
    files = []
    for i in range(10):
        spec = specs[i % 4 if i < 8 else 3 - i % 4]
        files.append(tmp_path / f"cnn_{i:02d}.pth")
        torch.save(params_to_state_dict(random_params(spec, 1, seed=i, scale=0.3)[0], spec), files[-1])
    alone = [predict_file(module, f) for f in files]
    for batch_size in (3, 10):
        batched = predict_files(module, files, batch_size=batch_size)
        assert [r["file"] for r in batched] == [str(f) for f in files]
        _close(batched, alone)
    assert len({round(r["prediction"], 6) for r in alone}) > 5


def test_cli_reads_folders_and_quoted_patterns_and_prints_the_per_file_results(classifier, inr_folder, capsys):
    alone = {f: predict_file(classifier, Path(f)) for f in network_files([inr_folder])}
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", "--batch-size", "2", str(inr_folder),
                 str(inr_folder / "inr_[01].pth")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [r["file"] for r in lines]
    assert names == list(alone) + [str(inr_folder / "inr_0.pth"), str(inr_folder / "inr_1.pth")]
    _close([{k: v for k, v in r.items() if k != "file"} for r in lines], [alone[f] for f in names])
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", "--batch-size", "0", str(inr_folder)]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_a_bad_file_among_many_is_one_line_and_nothing_is_predicted(inr_folder, tmp_path, capsys):
    folder = tmp_path / "many"
    shutil.copytree(inr_folder, folder, ignore=shutil.ignore_patterns("nested", "*.txt"))
    wrong = siren_spec((2, 8, 1))
    torch.save(params_to_state_dict(random_params(wrong, 1)[0], wrong), folder / "inr_3b.pth")
    assert main(["predict", "--checkpoint", "gnn-mnist_inr", "--batch-size", "2", str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # the files before it are not printed either: all are checked first
    (line,) = captured.err.strip().splitlines()
    assert "inr_3b.pth" in line and "wrong architecture" in line, line


@pytest.fixture(scope="module")
def editor():
    return load_pretrained("gnn-mnist_inr_dilate")


def test_batched_edits_equal_one_network_at_a_time(editor, inr_folder, tmp_path, capsys):
    files = network_files([inr_folder])[:5]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder)
    assert main(["predict", "--checkpoint", "gnn-mnist_inr_dilate", "--batch-size", "2", "--output",
                 str(tmp_path / "out"), str(folder)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in lines] == network_files([folder])
    for line in lines:
        spec, flat, state = read_network(editor, Path(line["file"]))
        alone = edit_network(editor, spec, flat, state)
        edited = torch.load(line["edited"], weights_only=True)
        assert list(edited) == list(state)
        for key in state:
            torch.testing.assert_close(edited[key], alone.state_dict[key], rtol=1e-4, atol=1e-5)
        assert line["mse"] == pytest.approx(alone.mse, abs=1e-5)
        assert line["identity_mse"] == pytest.approx(alone.identity_mse, abs=1e-6)
        assert Path(line["picture"]).read_bytes()[:4] == b"\x89PNG"
        assert Path(line["edited"]).parent == tmp_path / "out"


def test_edits_that_would_share_an_output_are_refused_before_anything_is_written(editor, inr_folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(inr_folder / "inr_0.pth", other / "inr_0.pth")
    out = tmp_path / "out"
    with pytest.raises(NnzooError, match="would both be edited into"):
        edit_files(editor, [inr_folder / "inr_0.pth", other / "inr_0.pth"], out)
    with pytest.raises(NnzooError, match="would both be edited into"):
        edit_files(editor, [other / "inr_0.pth", other / "inr_0.pth"])
    assert not out.exists() and sorted(p.name for p in other.iterdir()) == ["inr_0.pth"]
