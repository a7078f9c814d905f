"""ONNX export and the ONNX Runtime backend: reference parity, fp16, metadata checks, provider selection."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from clamp2_engine import M3, CLaMP2
from clamp2_engine.cli import main
from clamp2_engine.exporters.onnx import export_onnx
from clamp2_engine.runtime import onnx_runtime as ortmod
from clamp2_engine.runtime.onnx_folder import peek_identity
from clamp2_engine.runtime.onnx_loader import OnnxExportMismatch
from clamp2_engine.runtime.onnx_runtime import CPU, CUDA, select_providers
from tests.parity_helpers import CASES, cosine, expected_files

MIN_COSINE = 0.99999
MIN_COSINE_FP16 = 0.999


@pytest.fixture(scope="session")
def exports(parity_dir, tmp_path_factory) -> dict[str, Path]:
    """The fixture's CLaMP 2 and M3 checkpoints exported once per session (fp32, verified)."""
    out = {}
    for name, ckpt in (("clamp2", "clamp2.pth"), ("m3", "m3.pth")):
        folder = tmp_path_factory.mktemp(f"onnx-{name}")
        result = export_onnx(parity_dir / "checkpoints" / ckpt, folder, parity_dir / "text_model")
        assert min(result.verification.values()) >= MIN_COSINE, result.verification
        out[name] = folder
    return out


@pytest.fixture(scope="session")
def fp16_export(parity_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("onnx-clamp2-fp16")
    export_onnx(parity_dir / "checkpoints" / "clamp2.pth", folder, parity_dir / "text_model", fp16=True)
    return folder


@pytest.fixture(scope="session")
def onnx_models(exports) -> dict[str, CLaMP2]:
    return {
        "clamp2": CLaMP2.from_pretrained(backend="onnx", onnx_dir=exports["clamp2"], device="cpu"),
        "m3": M3(None, backend="onnx", onnx_dir=exports["m3"], device="cpu"),
    }


def worst_case_cosine(model: CLaMP2, parity_dir: Path, kind: str, sub: str, batch_size: int) -> float:
    expected = expected_files(parity_dir, kind, sub)
    inputs = [parity_dir / "inputs" / sub / f"{e.stem}.{sub}" for e in expected]
    encode = model.encode_text if sub == "txt" else model.encode_music
    feats = encode(inputs, pooled=kind == "clamp2_normalized", batch_size=batch_size)
    worst = 1.0
    for exp_path, feat in zip(expected, feats, strict=True):
        exp = np.load(exp_path)
        assert feat.dtype == np.float32
        assert feat[None].shape == exp.shape, exp_path.name
        worst = min(worst, cosine(feat, exp))
    return worst


@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize(("kind", "sub"), CASES)
def test_onnx_reproduces_reference(parity_dir, onnx_models, kind, sub, batch_size):
    model = onnx_models["m3" if kind == "m3" else "clamp2"]
    assert model.encoder.runtime.__class__.__name__ == "OnnxRuntime"
    assert worst_case_cosine(model, parity_dir, kind, sub, batch_size) >= MIN_COSINE


@pytest.mark.parametrize(("kind", "flags"), [("clamp2_normalized", ["--pooled"]), ("clamp2_raw", [])])
def test_embed_cli_with_onnx_backend(parity_dir, exports, tmp_path, kind, flags):
    """`embed --backend onnx --onnx-dir DIR` without --model: the identity comes from the graphs."""
    for sub in ("abc", "mtf", "txt"):
        dst = tmp_path / sub
        result = CliRunner().invoke(
            main,
            [
                "embed",
                str(parity_dir / "inputs" / sub),
                str(dst),
                "--backend",
                "onnx",
                "--onnx-dir",
                str(exports["clamp2"]),
                "--device",
                "cpu",
                "--quiet",
                *flags,
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        for exp_path in expected_files(parity_dir, kind, sub):
            got, exp = np.load(dst / exp_path.name), np.load(exp_path)
            assert got.dtype == np.float32
            assert got.shape == exp.shape
            assert cosine(got, exp) >= MIN_COSINE, exp_path.name


def test_identity_and_manifest(parity_dir, exports, onnx_models):
    torch_model = CLaMP2.from_pretrained(
        parity_dir / "checkpoints" / "clamp2.pth", parity_dir / "text_model", device="cpu", towers=("text",)
    )
    assert onnx_models["clamp2"].identity == torch_model.identity
    manifest = json.loads((exports["clamp2"] / "manifest.json").read_text())
    assert manifest["identity"] == torch_model.identity.as_dict()
    assert set(manifest["verification"]) == {"music.pooled", "music.hidden", "text.pooled", "text.hidden"}
    assert onnx_models["m3"].kind == "m3"
    assert not (exports["m3"] / "text.onnx").exists()
    assert peek_identity(exports["m3"])["kind"] == "m3"
    assert peek_identity(parity_dir) is None
    meta = {
        p.key: p.value
        for p in onnx.load(exports["clamp2"] / "music.onnx", load_external_data=False).metadata_props
    }
    assert meta["clamp2.patch_size"] == "64"
    assert (
        json.loads(meta["clamp2.identity"])["checkpoint_sha256"]
        == json.loads((parity_dir / "manifest.json").read_text())["checkpoints"]["clamp2.pth"]
    )


def test_music_graph_embeds_patches_with_gathers(exports):
    """The patch embedding is Gather + Add, never a one-hot or an 8192-wide MatMul."""
    graph = onnx.load(exports["clamp2"] / "music.onnx").graph
    ops = {n.op_type for n in graph.node}
    assert "OneHot" not in ops
    tensors = {t.name: tuple(t.dims) for t in graph.initializer}
    tensors |= {
        n.output[0]: tuple(a.t.dims)
        for n in graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    table = [n for n in graph.node if n.op_type == "Gather" and tensors.get(n.input[0]) == (64 * 128, 128)]
    assert len(table) == 64  # one gather per patch position from the transposed [P*128, H] weight
    assert (128, 64 * 128) not in tensors.values()
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "length", 64]


def test_one_tower_only_and_model_check(parity_dir, exports):
    text_only = CLaMP2.from_pretrained(
        parity_dir / "checkpoints" / "clamp2.pth",
        backend="onnx",
        onnx_dir=exports["clamp2"],
        device="cpu",
        towers=("text",),
    )
    assert text_only.encode_text("a jig in D").shape == (128,)
    with pytest.raises(RuntimeError, match="no music tower"):
        text_only.encode_music("X:1\nK:C\n|CDEF|\n")
    with pytest.raises(OnnxExportMismatch, match="another checkpoint"):
        CLaMP2.from_pretrained(
            parity_dir / "checkpoints" / "m3.pth", backend="onnx", onnx_dir=exports["clamp2"], device="cpu"
        )
    # a registry name is checked by its known sha256 (never downloaded); unknown sha: accepted, logged
    registry = {"clamp2": ortmod_registry_entry("clamp2", "0" * 64)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("clamp2_engine.checkpoints.REGISTRY", registry)
        with pytest.raises(OnnxExportMismatch, match="another checkpoint"):
            CLaMP2.from_pretrained("clamp2", backend="onnx", onnx_dir=exports["clamp2"], device="cpu")
        registry["clamp2"] = ortmod_registry_entry("clamp2", None)
        assert CLaMP2.from_pretrained("clamp2", backend="onnx", onnx_dir=exports["clamp2"], device="cpu").kind
    with pytest.raises(OnnxExportMismatch, match="m3 export, not clamp2"):
        CLaMP2.from_pretrained(backend="onnx", onnx_dir=exports["m3"], device="cpu", kind="clamp2")


def ortmod_registry_entry(name: str, sha256: str | None):
    from clamp2_engine.checkpoints import KnownCheckpoint

    return KnownCheckpoint(name, "clamp2", "example/repo", "weights.pth", sha256)


def _rewrite_metadata(src: Path, dst: Path, **changes: str) -> None:
    proto = onnx.load(src)
    for prop in proto.metadata_props:
        if prop.key in changes:
            prop.value = changes.pop(prop.key)
    for key, value in changes.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, dst)


def _copy_export(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("tower", "key", "value", "match"),
    [
        ("music", "clamp2.patch_size", "32", "patch size"),
        ("music", "clamp2.patch_length", "256", "patch length"),
        ("music", "clamp2.alphabet", "256", "alphabet"),
        ("music", "clamp2.format", "0", "export format"),
        ("music", "clamp2.tower", "text", "holds the 'text' tower"),
        ("text", "clamp2.tokenizer_sha256", "0" * 64, "tokenizer_sha256"),
        ("text", "clamp2.pad_token_id", "0", "pad_token_id"),
    ],
)
def test_metadata_mismatch_is_refused(exports, tmp_path, tower, key, value, match):
    folder = _copy_export(exports["clamp2"], tmp_path / "export")
    path = folder / f"{tower}.onnx"
    _rewrite_metadata(exports["clamp2"] / f"{tower}.onnx", path, **{key: value})
    with pytest.raises(OnnxExportMismatch, match=match):
        CLaMP2.from_pretrained(backend="onnx", onnx_dir=folder, device="cpu")


def test_foreign_tokenizer_and_mixed_exports_are_refused(parity_dir, exports, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(parity_dir / "text_model")
    tok.add_tokens(["<extra-token>"])
    tok.save_pretrained(tmp_path / "other-tokenizer")
    with pytest.raises(OnnxExportMismatch, match="does not match"):
        CLaMP2.from_pretrained(
            backend="onnx", onnx_dir=exports["clamp2"], text_model=tmp_path / "other-tokenizer", device="cpu"
        )
    mixed = _copy_export(exports["clamp2"], tmp_path / "mixed")
    shutil.copy(exports["m3"] / "music.onnx", mixed / "music.onnx")
    with pytest.raises(OnnxExportMismatch):
        CLaMP2.from_pretrained(backend="onnx", onnx_dir=mixed, device="cpu")
    plain = tmp_path / "plain"
    plain.mkdir()
    proto = onnx.load(exports["m3"] / "music.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, plain / "music.onnx")
    with pytest.raises(OnnxExportMismatch, match="no clamp2-engine metadata"):
        M3(None, backend="onnx", onnx_dir=plain, device="cpu")
    with pytest.raises(FileNotFoundError, match="holds no"):
        CLaMP2.from_pretrained(backend="onnx", onnx_dir=tmp_path / "nothing", device="cpu")


def test_cli_reports_mismatch_in_one_line(parity_dir, exports, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "embed",
            str(parity_dir / "inputs" / "abc"),
            str(tmp_path / "out"),
            "--backend",
            "onnx",
            "--onnx-dir",
            str(exports["clamp2"]),
            "--model",
            str(parity_dir / "checkpoints" / "m3.pth"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1
    assert "another checkpoint" in result.output
    assert "Traceback" not in result.output


def test_fp16_export_cosine(parity_dir, fp16_export, capsys):
    model = CLaMP2.from_pretrained(backend="onnx", onnx_dir=fp16_export, device="cpu")
    manifest = json.loads((fp16_export / "manifest.json").read_text())
    assert manifest["precision"] == "fp16"
    worst = min(worst_case_cosine(model, parity_dir, kind, sub, 16) for kind, sub in CASES if kind != "m3")
    with capsys.disabled():
        print(
            f"\nfp16 ONNX export: worst cosine against the reference features {worst:.7f}; "
            f"export self-check {min(manifest['verification'].values()):.7f}"
        )
    assert worst >= MIN_COSINE_FP16


def test_export_cli(parity_dir, tmp_path):
    args = [
        "export",
        "onnx",
        "--model",
        str(parity_dir / "checkpoints" / "m3.pth"),
        "--out",
        str(tmp_path / "m3"),
    ]
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["identity"]["kind"] == "m3"
    assert report["worst_cosine"] >= MIN_COSINE
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert "--overwrite" in again.output
    missing = CliRunner().invoke(
        main, ["export", "onnx", "--model", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "x")]
    )
    assert missing.exit_code == 1
    assert "nope.pth" in missing.output
    assert "Traceback" not in missing.output


@pytest.mark.parametrize("which", ["fp32", "fp16"])
def test_the_word_table_is_written_once_into_the_data_file(parity_dir, exports, fp16_export, which):
    """The text tower is exported without its word table (a 3-row stand-in), which is then written once,
    page-aligned, into ``text.onnx.data``, in the graph's precision; the parity tests check its values."""
    from clamp2_engine.exporters.word_table import ALIGN, ROWS

    folder = exports["clamp2"] if which == "fp32" else fp16_export
    proto = onnx.load(str(folder / "text.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    vocab = int(meta["clamp2.vocab_size"])
    hidden = json.loads(meta["clamp2.identity"])["text_hidden_size"]
    [table] = [t for t in proto.graph.initializer if list(t.dims) == [vocab, hidden]]
    assert not [t for t in proto.graph.initializer if list(t.dims) == [ROWS, hidden]]  # no stand-in left
    assert table.data_location == onnx.TensorProto.EXTERNAL
    where = {e.key: e.value for e in table.external_data}
    assert where["location"] == "text.onnx.data"
    assert int(where["offset"]) % ALIGN == 0
    size = 4 if which == "fp32" else 2
    assert int(where["length"]) == table.dims[0] * table.dims[1] * size
    want = {"fp32": onnx.TensorProto.FLOAT, "fp16": onnx.TensorProto.FLOAT16}[which]
    assert table.data_type == want


WITHOUT_CONVERT = """
import sys
class Block:  # as if the [convert] extra were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mido", "music21", "abctoolkit"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
from clamp2_engine.cli import main
main()
"""


@pytest.mark.slow
def test_export_needs_no_convert_extra(parity_dir, tmp_path):
    """`export onnx` runs on the [onnx] extra alone: its worker pool is not part of the converter (an
    export used to stop with "this needs mido")."""
    ckpt = parity_dir / "checkpoints" / "clamp2.pth"
    args = [
        "export",
        "onnx",
        "--model",
        ckpt,
        "--text-model",
        parity_dir / "text_model",
        "--out",
        tmp_path / "o",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_CONVERT, *map(str, args), "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["worst_cosine"] >= MIN_COSINE


# -- provider selection (the CUDA path is exercised with fake provider lists; no GPU is needed) --


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(ortmod, "_warned_cpu", False)
    monkeypatch.delenv(ortmod.ENV_PROVIDERS, raising=False)


def test_cuda_preferred_when_available(fresh_warning):
    assert select_providers(available=[CUDA, CPU]) == [CUDA, CPU]
    assert select_providers(device="cuda:1", available=[CUDA, CPU]) == [(CUDA, {"device_id": 1}), CPU]
    assert select_providers(device="cuda", available=["TensorrtExecutionProvider", CUDA, CPU])[0] == (
        CUDA,
        {"device_id": 0},
    )


@pytest.mark.parametrize(("gpu", "warnings"), [(True, 1), (False, 0)])
def test_cpu_fallback_warns_once_and_only_where_a_gpu_is(fresh_warning, caplog, monkeypatch, gpu, warnings):
    monkeypatch.setattr(ortmod, "_has_gpu", lambda: gpu)
    with caplog.at_level(logging.WARNING, logger=ortmod.__name__):
        assert select_providers(available=[CPU]) == [CPU]
        assert select_providers(available=[CPU]) == [CPU]
    assert len([r for r in caplog.records if "CUDAExecutionProvider" in r.message]) == warnings


def test_explicit_providers_win(fresh_warning, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger=ortmod.__name__):
        assert select_providers([CPU], device="cuda", available=[CUDA, CPU]) == [CPU]
        assert select_providers(device="cpu", available=[CUDA, CPU]) == [CPU]
        monkeypatch.setenv(ortmod.ENV_PROVIDERS, f"{CUDA}, {CPU}")
        assert select_providers(available=[CPU]) == [CUDA, CPU]
    assert not caplog.records
    monkeypatch.delenv(ortmod.ENV_PROVIDERS)
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        select_providers(device="cuda", available=[CPU])
    with pytest.raises(ValueError, match="unknown device"):
        select_providers(device="tpu", available=[CPU])


def test_build_session_uses_selection_and_threads(fresh_warning, exports, monkeypatch):
    import onnxruntime

    seen = {}

    class FakeSession:
        def __init__(self, path, options, providers):
            seen.update(path=path, threads=options.intra_op_num_threads, providers=providers)

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    ortmod.build_session(exports["m3"] / "music.onnx", threads=3)
    assert seen["providers"] == [CUDA, CPU]
    assert seen["threads"] == 3
    monkeypatch.setenv(ortmod.ENV_THREADS, "2")
    ortmod.build_session(exports["m3"] / "music.onnx", device="cuda:0")
    assert seen["providers"][0] == (CUDA, {"device_id": 0})
    assert seen["threads"] == 2


def test_real_session_on_cpu(exports):
    session = ortmod.build_session(exports["m3"] / "music.onnx", providers=[CPU], threads=1)
    assert session.get_providers() == [CPU]


def test_engine_never_imports_exporters():
    """Loading and serving a model (and the CLI's `export` module, until it runs) leave the exporters
    unimported: they are named by their installed name, clamp2_engine.exporters."""
    code = (
        "import sys, clamp2_engine, clamp2_engine.pretrained, clamp2_engine.loading, "
        "clamp2_engine.runtime.onnx_runtime, clamp2_engine.runtime.onnx_loader, clamp2_engine.cli.export; "
        "found = [m for m in sys.modules if m.startswith('clamp2_engine.exporters')]; "
        "assert found == [], found; "
        "import clamp2_engine.exporters.onnx; "
        "assert 'clamp2_engine.exporters.onnx' in sys.modules"  # the check can fail
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_int8_export_quantizes_and_serves(parity_dir, tmp_path):
    """`export onnx --dtype int8`: int8 weights (a smaller graph), verified against PyTorch, served like any export."""
    out = tmp_path / "int8"
    result = export_onnx(parity_dir / "checkpoints" / "clamp2.pth", out, parity_dir / "text_model", int8=True)
    assert result.precision == "int8"
    assert json.loads((out / "manifest.json").read_text())["precision"] == "int8"
    assert min(result.verification.values()) >= 0.95, result.verification
    graph = onnx.load(str(out / "text.onnx"))
    assert any(
        n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention") for n in graph.graph.node
    )
    model = CLaMP2.from_pretrained(backend="onnx", onnx_dir=out, device="cpu")
    reference = CLaMP2.from_pretrained(parity_dir / "checkpoints" / "clamp2.pth", parity_dir / "text_model")
    text = "a chorale for four voices"
    assert cosine(model.encode_text(text), reference.encode_text(text)) >= 0.95
    with pytest.raises(ValueError, match="fp16 or int8"):
        export_onnx(parity_dir / "checkpoints" / "clamp2.pth", tmp_path / "x", fp16=True, int8=True)


def test_an_onnx_model_says_its_precision(tmp_path, parity_dir):
    """``CLaMP2.precision`` under ONNX Runtime is the precision the graphs were exported at."""
    from clamp2_engine.exporters.onnx import export_onnx
    from clamp2_engine.pretrained import CLaMP2

    ckpt = parity_dir / "checkpoints" / "clamp2.pth"
    text_model = parity_dir / "text_model"
    export_onnx(ckpt, tmp_path / "int8", text_model, int8=True, verify=False)
    model = CLaMP2.from_pretrained(
        ckpt, text_model, backend="onnx", onnx_dir=tmp_path / "int8", towers=("text",)
    )
    assert (model.encoder.runtime.backend, model.precision) == ("onnx", "int8")


def test_an_export_of_the_older_format_is_refused_in_one_line(tmp_path, monkeypatch):
    """Format 2 renamed the text graph's inputs (input_ids, attention_mask: fastembed's): an older export
    is refused with one line saying to export again, and an older cached export is passed over."""
    import json as _json

    from clamp2_engine.runtime import onnx_folder
    from clamp2_engine.runtime.onnx_loader import OnnxExportMismatch, _check_graph

    meta = {"clamp2.identity": "{}", "clamp2.format": "1", "clamp2.tower": "text"}
    with pytest.raises(OnnxExportMismatch) as err:
        _check_graph(meta, "text", tmp_path / "text.onnx")
    assert "export it again with `clamp2-engine export onnx`" in str(err.value)
    assert "\n" not in str(err.value)
    identity = {"checkpoint_sha256": "ab" * 32, "max_text_length": 128}
    cache = onnx_folder.export_cache_dir(identity["checkpoint_sha256"])
    cache.mkdir(parents=True)
    (cache / onnx_folder.TEXT_FILE).write_bytes(b"")
    manifest = {"format": "1", "identity": identity}
    (cache / onnx_folder.MANIFEST).write_text(_json.dumps(manifest))
    assert onnx_folder.cached_export(identity) is None
    (cache / onnx_folder.MANIFEST).write_text(_json.dumps({**manifest, "format": onnx_folder.FORMAT_VERSION}))
    assert onnx_folder.cached_export(identity) == cache


def test_the_query_model_prepared_after_an_ingest_is_its_text_tower_alone(parity_dir, tmp_path, monkeypatch):
    """What an ingest prepares for fast searches: the text graph only (half the export's time), verified
    against PyTorch, and served; music queries by example load PyTorch, or a full `export onnx`."""
    from clamp2_engine.cli.prepare import prepare_query_model
    from clamp2_engine.runtime import onnx_folder
    from clamp2_engine.runtime.onnx_loader import open_export

    folder = tmp_path / "text-only"
    result = export_onnx(
        parity_dir / "checkpoints" / "clamp2.pth", folder, parity_dir / "text_model", towers=("text",)
    )
    assert sorted(result.verification) == ["text.hidden", "text.pooled"]
    assert min(result.verification.values()) >= MIN_COSINE
    assert (folder / onnx_folder.TEXT_FILE).is_file()
    assert not (folder / onnx_folder.MUSIC_FILE).exists()
    runtime, _tokenizer, _identity = open_export(folder, towers=("text",))
    assert runtime.has_text
    assert not runtime.has_music
    with pytest.raises(FileNotFoundError, match="music.onnx"):
        open_export(folder)

    calls = []
    monkeypatch.setenv("CLAMP2_PREPARE_QUERIES", "1")
    exporter = sys.modules[
        "clamp2_engine.exporters.onnx"
    ]  # what `prepare` imports from (test_extras reloads)
    monkeypatch.setattr(exporter, "export_onnx", lambda *a, **k: calls.append(k) or result)

    class Record:
        model = {"kind": "clamp2", "checkpoint_sha256": "cd" * 32}
        model_source = {"model": "x.pth", "text_model": "t"}

    class Store:
        def collection(self, _name):
            return type("C", (), {"record": Record})()

    prepare_query_model(Store(), "music", lambda _line: None)
    assert [c["towers"] for c in calls] == [("text",)]
