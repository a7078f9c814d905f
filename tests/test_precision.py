"""``dtype="auto"``: the precision chosen for the hardware, and a warning for emulated bf16."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from click.testing import CliRunner
from index_helpers import model_args

from clamp2_engine.cli import main
from clamp2_engine.runtime import precision
from clamp2_engine.runtime.torch_runtime import TorchRuntime

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16", "avx512_vnni"}
AMX = AVX2 | {"avx512f", "amx_tile", "amx_bf16"}


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(flags)``: this CPU has those flags, and ``$CLAMP2_DTYPE`` leaves ``auto`` alone."""
    monkeypatch.delenv("CLAMP2_DTYPE", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)

    def set_flags(flags: frozenset[str]) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: flags)

    return set_flags


@pytest.mark.parametrize(("flags", "expected"), [(AVX2, "fp32"), (AVX512_BF16, "bf16"), (AMX, "bf16")])
def test_auto_picks_what_the_cpu_computes_natively(cpu, flags, expected):
    cpu(flags)
    assert precision.auto_dtype(torch.device("cpu")) == expected
    assert precision.resolve(None, torch.device("cpu")) == expected
    assert precision.resolve("auto", torch.device("cpu")) == expected
    runtime = TorchRuntime(torch.nn.Linear(2, 2), "cpu")  # the default is auto
    assert runtime.dtype_name == expected
    assert runtime.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[expected]


@pytest.mark.parametrize(
    ("cap", "expected"), [("AVX2", "fp32"), ("avx512_core", "fp32"), ("AVX512_CORE_AMX", "bf16")]
)
def test_a_capped_instruction_set_counts(cpu, monkeypatch, cap, expected):
    """oneDNN capped below AVX-512 BF16 (``ONEDNN_MAX_CPU_ISA``) emulates bf16, whatever the flags say."""
    cpu(AMX)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert precision.auto_dtype(torch.device("cpu")) == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda(cpu, monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert precision.auto_dtype(torch.device("cuda")) == expected


def test_clamp2_dtype_sets_what_auto_means(cpu, monkeypatch):
    cpu(AVX512_BF16)
    monkeypatch.setenv("CLAMP2_DTYPE", "fp32")
    assert precision.resolve("auto", torch.device("cpu")) == "fp32"
    assert precision.resolve("bf16", torch.device("cpu")) == "bf16"  # an explicit choice stands


def test_explicit_bf16_where_it_is_emulated_warns_once(cpu, caplog):
    cpu(AVX2)
    caplog.set_level(logging.WARNING)
    assert precision.resolve("bf16", torch.device("cpu")) == "bf16"  # it runs
    [record] = caplog.records
    assert "5.7x slower than fp32" in record.getMessage()
    assert "--dtype auto picks fp32 here" in record.getMessage()
    caplog.clear()
    cpu(AVX512_BF16)
    precision.resolve("bf16", torch.device("cpu"))
    assert not caplog.records


def test_the_cli_says_the_warning_in_one_line_and_records_the_precision(cpu, parity_dir, tmp_path):
    cpu(AVX2)
    abc = tmp_path / "pieces"
    abc.mkdir()
    (abc / "tune.abc").write_text((parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc").read_text())
    store = ["--qdrant-path", str(tmp_path / "edge")]
    base = ["ingest", str(abc), "-c", "p", *store, "--jobs", "0", *map(str, model_args(parity_dir))]
    res = CliRunner().invoke(main, [*base, "--dtype", "bf16", "--json"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning: bf16")]
    assert len(warnings) == 1
    report = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert report["precision"] == "bf16"
    info = json.loads(CliRunner().invoke(main, ["collections", "info", "p", *store, "--json"]).output)
    assert info["model_source"]["dtype"] == "bf16"
    res = CliRunner().invoke(main, ["search", "tune", "-c", "p", *store, "--mode", "lexical", "--json"])
    assert json.loads(res.output.splitlines()[0])["payload"]["model"]["precision"] == "bf16"
    res = CliRunner().invoke(main, base)  # auto, on this (mocked) AVX2 CPU
    assert res.exit_code == 0, res.output
    [row] = [line for line in res.output.splitlines() if "precision" in line]
    assert "fp32" in row
    assert not [line for line in res.output.splitlines() if line.startswith("warning:")]


def test_embed_says_its_precision(cpu, parity_dir, tmp_path):
    cpu(AVX512_BF16)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.abc").write_text((parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc").read_text())
    res = CliRunner().invoke(
        main, ["embed", str(src), str(tmp_path / "out"), "--json", *map(str, model_args(parity_dir))]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["precision"] == "bf16"  # auto, on that CPU


@pytest.mark.parametrize(
    ("flags", "warned"), [(AVX2, True), (AVX512_BF16, False), (AVX2 | {"avx_vnni"}, False)]
)
def test_int8_without_vnni_warns(cpu, caplog, flags, warned):
    """int8 graphs on a CPU without VNNI or AMX run, with a one-line warning (they measured no faster than
    fp32 there); on a GPU, or with VNNI, nothing is said."""
    cpu(flags)
    caplog.set_level(logging.WARNING)
    precision.check_int8(on_cpu=True)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == (1 if warned else 0)
    assert all("no VNNI or AMX" in line and "fp32 export" in line for line in said)
    caplog.clear()
    precision.check_int8(on_cpu=False)
    assert not caplog.records
