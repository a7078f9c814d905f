"""Checkpoint loading: weights_only, shape-inferred sizes, clear errors, hub failure as one line."""

from __future__ import annotations

import pickle

import pytest
import torch
from click.testing import CliRunner

from clamp2_engine.checkpoints import (
    CheckpointError,
    ModelNotFoundError,
    detect_kind,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from clamp2_engine.cli import main
from clamp2_engine.errors import option_of
from clamp2_engine.models.factory import (
    build_clamp2,
    build_m3,
    infer_clamp2_config,
    infer_m3_config,
    load_text_assets,
)


@pytest.fixture(scope="module")
def clamp2_ckpt(parity_dir):
    return load_checkpoint(parity_dir / "checkpoints" / "clamp2.pth")


def test_sizes_are_read_from_shapes(clamp2_ckpt, parity_dir):
    cfg = infer_clamp2_config(clamp2_ckpt["model"])
    assert (cfg.music.hidden_size, cfg.music.num_layers, cfg.music.patch_size, cfg.music.patch_length) == (
        128,
        2,
        64,
        512,
    )
    assert (cfg.text.hidden_size, cfg.text.num_layers, cfg.text.vocab_size, cfg.embed_dim) == (
        128,
        2,
        602,
        128,
    )
    m3 = infer_m3_config(load_checkpoint(parity_dir / "checkpoints" / "m3.pth")["model"])
    assert (m3.hidden_size, m3.num_layers, m3.decoder_layers) == (128, 2, 2)
    assert detect_kind(clamp2_ckpt["model"]) == "clamp2"


def test_unused_pooler_keys_are_accepted_and_missing_keys_refused(clamp2_ckpt, parity_dir):
    hf_config, _ = load_text_assets(parity_dir / "text_model")
    state = dict(clamp2_ckpt["model"])
    build_clamp2(state, hf_config)  # poolers present in the checkpoint: fine
    no_pooler = {k: v for k, v in state.items() if ".pooler." not in k}
    build_clamp2(no_pooler, hf_config)  # and absent: fine too
    broken = {k: v for k, v in state.items() if k != "music_proj.bias"}
    with pytest.raises(CheckpointError, match="music_proj.bias"):
        build_clamp2(broken, hf_config)
    misshapen = dict(state)
    misshapen["text_proj.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"text_proj.bias has shape \(7,\)"):
        build_clamp2(misshapen, hf_config)


def test_weights_only_refuses_pickled_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"model": Evil()}, fh)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_unknown_layout_and_bare_state_dict(tmp_path, parity_dir):
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        detect_kind(load_checkpoint(tmp_path / "x.pth")["model"])
    m3_state = load_checkpoint(parity_dir / "checkpoints" / "m3.pth")["model"]
    torch.save(m3_state, tmp_path / "bare.pth")
    assert detect_kind(load_checkpoint(tmp_path / "bare.pth")["model"]) == "m3"


def test_save_checkpoint_round_trips_in_reference_layout(tmp_path, parity_dir):
    model = build_m3(load_checkpoint(parity_dir / "checkpoints" / "m3.pth")["model"])
    path = save_checkpoint(
        tmp_path / "run" / "weights.pth", model.state_dict(), epoch=2, best_epoch=1, min_eval_loss=0.5
    )
    obj = torch.load(path, weights_only=True)
    assert set(obj) >= {"model", "optimizer", "lr_sched", "epoch", "best_epoch", "min_eval_loss"}
    fresh = build_m3(obj["model"])
    fresh.load_state_dict(obj["model"], strict=True)  # the reference loads strictly


def test_offline_hub_failure_is_one_line_naming_model_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CLAMP2_MODEL", raising=False)
    with pytest.raises(ModelNotFoundError, match="local checkpoint file") as info:
        resolve_checkpoint("clamp2")
    assert "\n" not in str(info.value)
    assert option_of(info.value) == "model"  # the library names no flag; the CLI adds it
    result = CliRunner().invoke(main, ["embed", "tests", "/tmp/unused-out", "--text-model", "x"])
    assert result.exit_code != 0
    assert "--model PATH" in result.output
    assert "Traceback" not in result.output


def test_offline_message_names_the_way_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_checkpoint("clamp2")
    msg = str(info.value)
    assert "offline" in msg
    assert "--" not in msg
    assert "clamp2-engine demo" in msg


def test_offline_text_model_from_the_hub_is_one_line(parity_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "q.txt").write_text("hello", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "embed",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--model",
            str(parity_dir / "checkpoints" / "clamp2.pth"),
            "--pooled",
        ],
    )
    assert result.exit_code == 1
    assert "FacebookAI/xlm-roberta-base" in result.output
    assert "--text-model DIR" in result.output
    assert "offline" in result.output
    assert "Traceback" not in result.output


def test_unreachable_hub_is_detected_once_without_the_offline_flag(tmp_path):
    """No HF_HUB_OFFLINE: the Hub endpoint is a closed loopback port. One connection test, one line."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), CLAMP2_HOME=str(tmp_path / "home")
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "q.txt").write_text("hello", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "clamp2_engine", "embed", str(tmp_path / "in"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard, not a speed check
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # no retry chatter from huggingface_hub
    assert "offline" in lines[0]
    assert "--model PATH" in lines[0]
    assert "clamp2-engine demo" in lines[0]


def test_missing_text_model_is_one_clear_line(parity_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "q.txt").write_text("hello", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "embed",
            str(src),
            str(tmp_path / "out"),
            "--model",
            str(parity_dir / "checkpoints" / "clamp2.pth"),
            "--text-model",
            str(tmp_path / "nowhere"),
        ],
    )
    assert result.exit_code != 0
    assert "--text-model DIR" in result.output
    assert "Traceback" not in result.output


def test_a_cached_hub_model_loads_without_touching_the_network(parity_dir, tmp_path):
    """A Hub name already in the Hugging Face cache is read from it with no request and no reachability
    probe (a probe would cost up to 2 s per start on a network that drops packets)."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "hf" / "hub" / "models--someone--tiny-xlmr"
    shutil.copytree(parity_dir / "text_model", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40, encoding="utf-8")
    script = (
        "import clamp2_engine.checkpoints as c\n"
        "def probe(): raise SystemExit('the Hub was probed')\n"
        "c.hub_offline = probe\n"  # cache_first looks it up in its module at call time
        "import clamp2_engine.models.factory as f\n"
        "config, tok = f.load_text_assets('someone/tiny-xlmr')\n"
        "print(config.hidden_size, len(tok))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.split() == ["128", "602"]
