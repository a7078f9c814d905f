"""What makes a process start fast: the export's tokenizer without transformers, checkpoint hashes
remembered across processes, and the search path's imports."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from clamp2_engine import checkpoints
from clamp2_engine.runtime.tokenizer import TokenizerFile

TEXTS = [
    "a lively jig",
    "Eine fröhliche Polka für Klavier\nzweite Zeile </s> mit Trennzeichen",
    "日本の民謡、ゆっくりとしたテンポ",
    "",
    "word " * 2000,
    "<s> <pad> <mask> emoji 🎵 ñ",
]


def test_tokenizer_file_gives_the_transformers_ids(parity_dir, tmp_path):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(parity_dir / "text_model")
    reference.save_pretrained(tmp_path)  # as `export onnx` saves it beside the graphs
    fast = TokenizerFile(tmp_path)
    assert TokenizerFile.available(tmp_path)
    assert not TokenizerFile.available(tmp_path / "nope")
    for text in TEXTS:
        assert fast(text)["input_ids"] == reference(text)["input_ids"], text[:20]
    assert (fast.sep_token, fast.pad_token_id, len(fast)) == (
        reference.sep_token,
        reference.pad_token_id,
        len(reference),
    )
    assert fast.get_vocab() == reference.get_vocab()


def test_a_checkpoint_is_hashed_once_across_processes(tmp_path, monkeypatch):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"weights" * 1000)
    want = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert checkpoints.sha256_file(ckpt) == want
    monkeypatch.setattr(checkpoints, "_SHA_CACHE", {})  # a new process: only the data folder remembers

    def no_hashing(*_a, **_k):
        raise AssertionError("hashed again")

    monkeypatch.setattr(checkpoints.hashlib, "sha256", no_hashing)
    assert checkpoints.sha256_file(ckpt) == want
    monkeypatch.undo()
    ckpt.write_bytes(b"other weights")  # a changed file (size and mtime) is hashed anew
    assert checkpoints.sha256_file(ckpt) == hashlib.sha256(b"other weights").hexdigest()


@pytest.mark.parametrize(
    "module",
    [
        "clamp2_engine.cli",
        "clamp2_engine.checkpoints",
        "clamp2_engine.pretrained",
        "clamp2_engine.search",
        "clamp2_engine.runtime.onnx_runtime",
    ],
)
def test_search_path_modules_import_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
