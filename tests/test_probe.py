"""Linear probe on raw features (clamp2_engine.probe, `classify train` / `classify predict`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import save_feature

from clamp2_engine import probe as P
from clamp2_engine.cli import main

H = 16
LABELS = ("jazz", "folk", "baroque")


def make_set(root: Path, per_label: int = 12, seed: int = 0, hidden: int = H, labels=LABELS) -> Path:
    """Separable raw features: each label has its own mean direction; lengths vary; [1, L, H] files."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((len(labels), hidden)) * 3
    root.mkdir(parents=True, exist_ok=True)
    for c, label in enumerate(labels):
        for i in range(per_label):
            length = int(rng.integers(2, 9))
            x = centres[c] + rng.standard_normal((length, hidden))
            np.save(root / f"{label}_{seed}_{i:03d}.npy", x[None].astype(np.float32))
    return root


FAST = P.ProbeConfig(lr=3e-3, epochs=60, patience=15, batch_size=4, device="cpu")


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_masked_mean_equals_one_at_a_time():
    torch.manual_seed(0)
    model = P.LinearProbe(H, 3).eval()
    a, b = torch.randn(3, H), torch.randn(7, H)
    x, mask = P._batch([a, b])
    with torch.no_grad():
        batched = model(x, mask)
        single = torch.cat([model(a[None]), model(b[None])])
    assert torch.allclose(batched, single, atol=1e-6)
    assert set(model.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}  # as the reference


@pytest.mark.parametrize(("name", "label"), [("jazz_001.npy", "jazz"), ("a_b_c.npy", "a"), ("x_.npy", "x")])
def test_label_of(name, label):
    assert P.label_of(name) == label


@pytest.mark.parametrize("name", ["nolabel.npy", "_x.npy"])
def test_label_missing_is_an_error(name):
    with pytest.raises(P.FeatureError, match="no label"):
        P.label_of(name)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (np.zeros((2, 3, H), np.float32), "expected raw features"),
        (np.zeros((1, 1, 3, H), np.float32), "expected raw features"),
        (np.zeros((1, 0, H), np.float32), "empty"),
        (np.zeros((1, 3, H), np.int32), "floating-point"),
        (np.full((1, 3, H), np.inf, np.float32), "NaN or infinite"),
        (b"\x93NUMPY garbage", "unreadable"),
    ],
)
def test_wrong_feature_file_is_a_clear_error(tmp_path, content, reason):
    path = save_feature(tmp_path / "jazz_bad.npy", content)
    with pytest.raises(P.FeatureError, match=reason):
        P.load_feature(path)
    files, errors = P.scan_features([tmp_path])
    assert files == []
    assert errors[0][0] == str(path)
    assert reason.split("\\")[0] in errors[0][1]


@pytest.mark.parametrize("shape", [(1, 5, H), (5, H), (H,)])
def test_accepted_shapes(tmp_path, shape):
    np.save(tmp_path / "a_x.npy", np.ones(shape, np.float32))
    arr = P.load_feature(tmp_path / "a_x.npy")
    assert arr.shape == ((5, H) if len(shape) > 1 else (1, H))


def test_stratified_split_keeps_every_label_in_training(tmp_path):
    make_set(tmp_path, per_label=5)
    (tmp_path / "rare_only.npy").write_bytes((tmp_path / "jazz_0_000.npy").read_bytes())
    files, errors = P.scan_features([tmp_path])
    assert not errors
    train, ev = P.split_eval(files, 0.2, seed=1)
    assert {f.label for f in train} == {*LABELS, "rare"}
    assert sorted(f.label for f in ev) == sorted(LABELS)
    assert len(train) + len(ev) == len(files)


def test_classification_report():
    rep = P.classification_report([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert rep["accuracy"] == pytest.approx(3 / 5)
    # F1: a = 2*1/(2+2) = 0.5, b = 2*2/(2+3) = 0.8, c = 0 -> macro 0.4333
    assert rep["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert rep["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_probe_learns_separable_set_and_round_trips(tmp_path):
    make_set(tmp_path / "train", per_label=15)
    files, errors = P.scan_features([tmp_path / "train"])
    assert not errors
    assert len(files) == 45
    epochs: list[tuple[int, float, float, bool]] = []
    probe = P.train_probe(files, None, FAST, on_epoch=lambda *a: epochs.append(a))
    m = probe.metrics
    assert m["accuracy"] >= 0.95
    assert m["macro_f1"] >= 0.95
    assert m["eval_files"] == 9
    assert m["train_files"] == 36
    assert epochs[m["best_epoch"] - 1][2] == m["accuracy"]
    assert len(epochs) == m["epochs_run"]
    assert m["epochs_run"] - m["best_epoch"] <= FAST.patience
    assert probe.labels == sorted(LABELS)

    path = tmp_path / "probe.pt"
    P.save_probe(probe, path)
    loaded = P.load_probe(path)
    assert loaded.labels == probe.labels
    assert loaded.config["input_size"] == H
    assert loaded.metrics["confusion"] == m["confusion"]
    for k, v in probe.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])
    make_set(tmp_path / "test", per_label=6, seed=7)
    test_files = sorted((tmp_path / "test").glob("*.npy"))
    pred, errors = P.predict(loaded, test_files, batch_size=5)
    assert not errors
    assert sum(pred[str(p)] == p.name.split("_")[0] for p in test_files) / len(test_files) >= 0.95
    assert P.predict(probe, test_files, batch_size=1)[0] == pred  # batching does not change predictions


def test_probe_file_is_plain_and_loads_weights_only(tmp_path):
    make_set(tmp_path / "t", per_label=4)
    files, _ = P.scan_features([tmp_path / "t"])
    probe = P.train_probe(files, None, P.ProbeConfig(epochs=2, device="cpu"))
    P.save_probe(probe, tmp_path / "p.pt")
    data = torch.load(tmp_path / "p.pt", weights_only=True)
    assert data["format"] == P.FORMAT
    assert data["labels"] == sorted(LABELS)
    assert set(data) == {"format", "version", "state_dict", "labels", "config", "metrics"}


def test_reference_checkpoint_loads(tmp_path):
    model = P.LinearProbe(H, 2)
    ckpt = {
        "model": model.state_dict(),
        "epoch": 3,
        "best_epoch": 3,
        "max_eval_acc": 0.9,
        "labels": {"rock": 1, "pop": 0},
    }
    torch.save(ckpt, tmp_path / "weights-ref.pth")
    probe = P.load_probe(tmp_path / "weights-ref.pth")
    assert probe.labels == ["pop", "rock"]
    assert probe.input_size == H


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_bad_probe_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"something": 1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="probe"):
        P.load_probe(path)


def test_balanced_sampling_and_explicit_eval(tmp_path):
    rng = np.random.default_rng(0)
    for label, n in (("a", 12), ("b", 3)):
        for i in range(n):
            np.save(tmp_path / f"{label}_{i}.npy", rng.standard_normal((1, 3, H)).astype(np.float32))
    files, _ = P.scan_features([tmp_path])
    epochs = []
    P.train_probe(
        files,
        files[:2],
        P.ProbeConfig(epochs=3, patience=5, balanced=True, device="cpu"),
        on_epoch=lambda *a: epochs.append(a),
    )
    assert len(epochs) == 3
    with pytest.raises(ValueError, match="two labels"):
        P.train_probe([f for f in files if f.label == "a"], files[:1], FAST)
    unknown = P.FeatureFile(Path("c_0.npy"), "c", 3, H)
    with pytest.raises(ValueError, match="not among the training labels"):
        P.train_probe(files, [unknown], FAST)


def test_cli_train_and_predict(tmp_path):
    pytest.importorskip("matplotlib")
    train = make_set(tmp_path / "train", per_label=12)
    np.save(train / "jazz_wide.npy", np.ones((1, 3, H + 1), np.float32))  # wrong hidden size
    np.save(train / "folk_bad.npy", np.ones((2, 3, H), np.float32))  # wrong shape
    probe_path = tmp_path / "out" / "probe.pt"
    plot = tmp_path / "out" / "confusion.png"
    res = run(
        "classify",
        "train",
        str(train),
        "--out",
        str(probe_path),
        "--lr",
        "3e-3",
        "--batch-size",
        "4",
        "--epochs",
        "60",
        "--patience",
        "15",
        "--device",
        "cpu",
        "--plot",
        str(plot),
        "--json",
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["accuracy"] >= 0.95
    assert report["labels"] == sorted(LABELS)
    assert report["skipped"] == 2
    assert len(report["confusion"]) == 3
    assert {Path(e["source"]).name for e in report["errors"]} == {"jazz_wide.npy", "folk_bad.npy"}
    log = probe_path.with_name("probe.pt.errors.jsonl")
    assert len(log.read_text().splitlines()) == 2
    assert plot.read_bytes()[:4] == b"\x89PNG"

    test = make_set(tmp_path / "test", per_label=4, seed=5)
    np.save(test / "jazz_small.npy", np.ones((1, 3, 8), np.float32))
    preds = tmp_path / "predictions.json"
    res = run("classify", "predict", str(test), "--probe", str(probe_path), "--out", str(preds), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["predictions"] == 12
    assert "probe's input size 16" in summary["errors"][0]["reason"]
    mapping = json.loads(preds.read_text())
    assert sum(label == Path(p).name.split("_")[0] for p, label in mapping.items()) >= 11

    res = run("classify", "predict", str(test), "--probe", str(probe_path), "--out", str(preds))
    assert res.exit_code == 0
    assert "Predictions" in res.stdout


def test_cli_train_human_output_and_eval_dir(tmp_path):
    train = make_set(tmp_path / "train", per_label=6)
    ev = make_set(tmp_path / "eval", per_label=2, seed=3, labels=(*LABELS, "unseen"))
    res = run(
        "classify",
        "train",
        str(train),
        "--out",
        str(tmp_path / "p.pt"),
        "--eval-dir",
        str(ev),
        "--epochs",
        "3",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    assert "Linear probe" in res.stdout
    assert "Confusion matrix" in res.stdout
    assert "not among the training labels" in res.stderr


def test_cli_train_without_usable_files(tmp_path):
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "nolabel.npy", np.ones((1, 2, H), np.float32))
    res = run("classify", "train", str(tmp_path / "f"), "--out", str(tmp_path / "p.pt"))
    assert res.exit_code == 1
    assert "no usable training features" in res.output
    assert "no label" in res.stderr


def test_cli_bad_device_is_a_clear_error(tmp_path):
    make_set(tmp_path / "t", per_label=3)
    res = run("classify", "train", str(tmp_path / "t"), "--out", str(tmp_path / "p.pt"), "--device", "bogus")
    assert res.exit_code == 1
    assert "unknown device 'bogus'" in res.output
