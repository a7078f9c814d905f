"""Reference parity: every expected feature of the fixture, through the CLI and the Python API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clamp2_engine import M3, CLaMP2
from clamp2_engine.cli import main
from clamp2_engine.encoder import InputError
from tests.parity_helpers import CASES, MIN_COSINE, cosine, expected_files, input_for


@pytest.fixture(scope="module")
def clamp2(parity_dir):
    return CLaMP2.from_pretrained(
        parity_dir / "checkpoints" / "clamp2.pth", parity_dir / "text_model", device="cpu"
    )


@pytest.fixture(scope="module")
def m3(parity_dir):
    return M3(parity_dir / "checkpoints" / "m3.pth", device="cpu")


@pytest.fixture(scope="module")
def cli_outputs(parity_dir, tmp_path_factory):
    """Run `clamp2-engine embed` once per feature kind over the fixture's inputs."""
    runner = CliRunner()
    out: dict[str, Path] = {}
    for kind, ckpt, extra in [
        ("clamp2_normalized", "clamp2.pth", ["--pooled"]),
        ("clamp2_raw", "clamp2.pth", []),
        ("m3", "m3.pth", []),
    ]:
        for sub in ("abc", "mtf", "txt"):
            if kind == "m3" and sub == "txt":
                continue
            dst = tmp_path_factory.mktemp(f"{kind}-{sub}")
            args = [
                "embed",
                str(parity_dir / "inputs" / sub),
                str(dst),
                "--model",
                str(parity_dir / "checkpoints" / ckpt),
                "--text-model",
                str(parity_dir / "text_model"),
                "--device",
                "cpu",
                "--quiet",
                *extra,
            ]
            result = runner.invoke(main, args, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            out[f"{kind}/{sub}"] = dst
    return out


@pytest.mark.parametrize(("kind", "sub"), CASES)
def test_cli_reproduces_reference(parity_dir, cli_outputs, kind, sub):
    for exp_path in expected_files(parity_dir, kind, sub):
        got = np.load(cli_outputs[f"{kind}/{sub}"] / exp_path.name)
        exp = np.load(exp_path)
        assert got.dtype == np.float32
        assert got.shape == exp.shape, exp_path.name
        assert cosine(got, exp) >= MIN_COSINE, exp_path.name


# every way of cutting windows into passes: one window a pass, a fixed count, a token budget smaller than
# a long piece (its windows land in different passes, short ones share a pass), and one pass for everything
BATCHINGS = {
    "one-window": {"batch_size": 1},
    "16-windows": {"batch_size": 16},
    "budget-40": {"max_batch_tokens": 40},
    "budget-huge": {"max_batch_tokens": 1 << 20},
}


@pytest.mark.parametrize("batching", list(BATCHINGS))
@pytest.mark.parametrize(("kind", "sub"), CASES)
def test_api_reproduces_reference(parity_dir, clamp2, m3, kind, sub, batching):
    model = m3 if kind == "m3" else clamp2
    expected = expected_files(parity_dir, kind, sub)
    inputs = [input_for(parity_dir, sub, e) for e in expected]
    normalize = kind == "clamp2_normalized"
    encode = model.encode_text if sub == "txt" else model.encode_music
    feats = encode(inputs, pooled=normalize, **BATCHINGS[batching])
    for exp_path, feat in zip(expected, feats, strict=True):
        exp = np.load(exp_path)
        assert feat[None].shape == exp.shape, exp_path.name
        assert cosine(feat, exp) >= MIN_COSINE, exp_path.name


def test_single_item_and_raw_text_inputs(parity_dir, clamp2):
    abc_path = parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc"
    one = clamp2.encode_music(abc_path)
    assert one.shape == (clamp2.embed_dim,)
    from_text = clamp2.encode_music(abc_path.read_text(encoding="utf-8"))
    np.testing.assert_allclose(one, from_text, rtol=1e-5, atol=1e-6)
    many = clamp2.encode_music([abc_path.read_text(encoding="utf-8"), abc_path])
    assert many.shape == (2, clamp2.embed_dim)
    with pytest.raises(InputError, match="no musical content"):
        clamp2.encode_music(str(abc_path))  # a str is content, never guessed to be a file name
    txt = clamp2.encode_text("a melancholic waltz for solo piano")
    assert txt.shape == (clamp2.embed_dim,)
    assert clamp2.encode_text([]).shape == (0, clamp2.embed_dim)


def test_order_is_restored_across_length_sorted_batches(parity_dir, clamp2):
    files = sorted((parity_dir / "inputs" / "abc").glob("*.abc"))
    forward = clamp2.encode_music(files, batch_size=3)
    backward = clamp2.encode_music(files[::-1], batch_size=3)
    np.testing.assert_allclose(forward, backward[::-1], rtol=1e-4, atol=1e-5)


def test_m3_refuses_text_and_pooling(m3):
    with pytest.raises(ValueError, match="music-only"):
        m3.encode_text("hello")
    with pytest.raises(ValueError, match="no projection"):
        m3.encode_music("X:1\nL:1/8\nK:C\n|:CDEF|\n", pooled=True)


def test_pooled_is_the_one_name(parity_dir):
    model = CLaMP2.from_pretrained(parity_dir / "checkpoints" / "clamp2.pth", parity_dir / "text_model")
    raw = model.encode_text("a hymn for four voices", pooled=False)
    assert raw.ndim == 2
    with pytest.raises(TypeError):
        model.encode_text("a hymn for four voices", normalize=False)  # the old name is gone
    assert model.encode_text("a hymn", pooled=True).shape == (model.embed_dim,)


def test_m3_is_an_m3(m3):
    assert isinstance(m3, M3)
    assert isinstance(m3, CLaMP2)
    assert m3.kind == "m3"
