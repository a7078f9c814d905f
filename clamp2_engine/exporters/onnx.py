"""Export the CLaMP 2 music and text towers (or an M3 encoder) to ONNX for ONNX Runtime.

``export_onnx(model, out, text_model)`` writes ``music.onnx`` and ``text.onnx`` (dynamic batch and length
axes; outputs ``pooled`` = masked mean + projection ``[B, D]`` and ``hidden`` ``[B, L, H]``), copies the
tokenizer to ``tokenizer/`` so the folder is self-contained, stores the model's identity and its
tokenizer / patch settings in each graph's metadata, and verifies the graphs against PyTorch.

The music graph's patch embedding is a gather: 64 ``Gather`` + ``Add`` nodes, one per patch position,
into the transposed ``Linear(P*128, H)`` weight (no 8192-wide one-hot, no ``[B, L, 64, H]`` intermediate).
Transformer blocks are exported with eager attention, then fused by ONNX Runtime's transformer optimizer
(``Attention``, ``SkipLayerNormalization``, ``BiasGelu``) unless ``fuse=False``. Each graph is finished
(optimized, quantized) in a worker process of its own, and the text tower's word table is kept out of all
of it (:mod:`.word_table`): the full-size export peaks at 3.4 GiB.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from clamp2_engine.errors import about
from clamp2_engine.exporters import word_table
from clamp2_engine.exporters.graphs import Tower, towers_for, trace, word_embeddings
from clamp2_engine.runtime.onnx_folder import (
    FASTEMBED_JSON,
    FORMAT_VERSION,
    MANIFEST,
    META,
    MUSIC_FILE,
    TEXT_FILE,
    TOKENIZER_DIR,
    export_cache_dir,
)

DEFAULT_OPSET = 17
# Weights over this size go to ``<graph>.onnx.data`` beside the graph: ONNX Runtime memory-maps that file,
# so a session over a full-size text tower starts in 0.4 s instead of 2.4 s (and protobuf's 2 GiB limit
# never applies).
EXTERNAL_DATA_BYTES = 1 << 20


@dataclass
class ExportResult:
    out: Path
    identity: dict[str, Any]
    precision: str
    opset: int
    files: dict[str, Path]
    verification: dict[str, float]  # "music.pooled" -> worst cosine against PyTorch fp32
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "identity": self.identity,
            "precision": self.precision,
            "opset": self.opset,
            "files": {k: str(v) for k, v in self.files.items()},
            "verification": self.verification,
            "seconds": round(self.seconds, 2),
        }


def load_for_export(
    model: str | os.PathLike | None,
    text_model: str | os.PathLike | None = None,
    attn_implementation: str = "eager",
    max_text_length: int | None = None,
):
    """``(module, identity dict, tokenizer)``: a CLaMP2Model (or M3PatchEncoder) built for tracing."""
    from clamp2_engine.loading import load_torch

    loaded = load_torch(
        model, text_model, max_text_length=max_text_length, attn_implementation=attn_implementation
    )
    return loaded.module, loaded.identity.as_dict(), loaded.tokenizer


def postprocess_to(task: tuple[str, int, int, str, bool, str, str, dict[str, str]]) -> str:
    """Worker side: :func:`postprocess` of a traced graph, saved with its metadata. In a process of its
    own, so that the several copies of the graph the optimizer and the quantizer make are given back to
    the system when it ends (an int8 export of the full-size model peaked at 15.5 GB in one process)."""
    name, heads, hidden, raw, fuse, precision, target, meta = task
    tower = Tower(name, None, (), (), (), heads, hidden, meta)  # type: ignore[arg-type]
    save_graph(postprocess(tower, Path(raw), fuse, precision), Path(target), meta)
    return target


def postprocess(tower: Tower, path: Path, fuse: bool, precision: str):
    """Fused transformer ops (ONNX Runtime's optimizer), then the precision: fp16 weights with fp32/int64
    I/O, or int8 by ONNX Runtime's dynamic quantization (int8 weights of every MatMul, Gemm and fused
    Attention; activations quantized per batch at run time; embedding gathers stay float)."""
    import onnx

    proto = onnx.load(os.fspath(path))
    if fuse:
        from onnxruntime.transformers.optimizer import optimize_model

        proto = optimize_model(
            proto,
            model_type="bert",
            num_heads=tower.num_heads,
            hidden_size=tower.hidden_size,
            opt_level=0,
            only_onnxruntime=False,
        ).model
    if precision == "fp16":
        from onnxruntime.transformers.onnx_model import OnnxModel

        half = OnnxModel(proto)
        half.convert_float_to_float16(keep_io_types=True)
        return half.model
    if precision == "int8":
        return quantize_int8(proto, path.with_name(path.name + ".int8"))
    return proto


class _DropRecord(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


QUANTIZED_OPS = ["MatMul", "Attention", "Gemm"]  # the matrix products; embedding gathers stay float


def quantize_int8(proto, scratch: Path):
    """``proto`` with int8 weights of its matrix products (ONNX Runtime dynamic quantization, symmetric,
    per output channel); embedding gathers keep float weights."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not any(o.domain == "com.microsoft" for o in proto.opset_import):  # the fused ops' domain
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    hint = _DropRecord("pre-processing before quantization")  # advice for image models, on the root logger
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(
            proto,
            os.fspath(scratch),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
            use_external_data_format=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused ops' outputs
        )
        return onnx.load(os.fspath(scratch))
    finally:
        logging.getLogger().removeFilter(hint)
        scratch.unlink(missing_ok=True)
        for leftover in scratch.parent.glob(scratch.name + "*"):
            leftover.unlink(missing_ok=True)


def save_graph(proto, path: Path, metadata: dict[str, str]) -> None:
    """Metadata into ``metadata_props``; written to a temporary name, then renamed into place."""
    import onnx

    del proto.metadata_props[:]
    for key, value in sorted(metadata.items()):
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.doc_string = (
        "clamp2-engine",
        "CLaMP 2 tower exported by clamp2-engine export onnx",
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    external = sum(t.ByteSize() for t in proto.graph.initializer) > EXTERNAL_DATA_BYTES
    data = path.name + ".data"
    if external and (path.parent / data).exists():
        (path.parent / data).unlink()
    try:
        onnx.save_model(
            proto,
            os.fspath(tmp),
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            location=data if external else None,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def in_worker(fn: Callable[[Any], Any], task: Any) -> Any:
    """``fn(task)`` in a fresh worker process (no time limit); its error raised here as a RuntimeError."""
    from clamp2_engine.workers import run_tasks

    [outcome] = run_tasks(fn, [task], jobs=1, timeout=None)
    if not outcome.ok:
        raise RuntimeError(f"the ONNX graph could not be finished: {outcome.error}")
    return outcome.result


def _check_free(out: Path, overwrite: bool) -> None:
    existing = [f for f in (MUSIC_FILE, TEXT_FILE) if (out / f).exists()]
    if existing and not overwrite:
        raise about(
            FileExistsError(
                f"{out} already holds {', '.join(existing)}: replace them, or choose another folder"
            ),
            "overwrite",
        )


def export_onnx(
    model: str | os.PathLike | None,
    out: str | os.PathLike | None,
    text_model: str | os.PathLike | None = None,
    *,
    fp16: bool = False,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
    fuse: bool = True,
    verify: bool = True,
    overwrite: bool = False,
    max_text_length: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
    towers: Sequence[str] = ("music", "text"),
) -> ExportResult:
    """Export ``model`` (checkpoint path or registry name) into the folder ``out``; see the module docs.

    ``out=None``: the model cache (:func:`~clamp2_engine.runtime.onnx_folder.export_cache_dir`), replaced
    if it is there, where search and serve find the graphs by themselves."""
    import onnx
    import onnxruntime

    from clamp2_engine.paths import atomic_write_text

    start = time.perf_counter()
    if opset < 14:
        raise ValueError(
            f"opset {opset} is too old: 14 or newer is needed (LayerNormalization fusions, int64 ops)"
        )
    if fp16 and int8:
        raise ValueError("choose fp16 or int8, not both")
    if out is not None:
        _check_free(Path(out).expanduser(), overwrite)
    log("loading the checkpoint")
    module, identity, tokenizer = load_for_export(model, text_model, max_text_length=max_text_length)
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    out = (
        Path(out).expanduser()
        if out is not None
        else export_cache_dir(identity["checkpoint_sha256"], precision)
    )
    wanted, towers = towers, [t for t in towers_for(module, identity, tokenizer) if t.name in towers]
    if not towers:
        raise ValueError(f"the model has none of the towers {', '.join(wanted)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # written last: a folder without it is never served
    files: dict[str, Path] = {}
    for tower in towers:
        log(f"exporting the {tower.name} tower")
        target = out / (MUSIC_FILE if tower.name == "music" else TEXT_FILE)
        raw = out / f".{tower.name}.{os.getpid()}.raw.onnx"
        meta = {
            **tower.metadata,
            META + "precision": precision,
            META + "opset": str(opset),
            META + "fused": str(fuse).lower(),
            META + "exporter": f"torch {torch.__version__}, onnx "
            f"{onnx.__version__}, onnxruntime {onnxruntime.__version__}",
        }
        try:
            with word_table.stand_in(words) if (words := word_embeddings(tower)) else nullcontext() as table:
                if table is not None:  # the text tower: traced and finished without its word table
                    ids, masks = tower.example
                    tower = replace(tower, example=(word_table.example_ids(ids), masks))
                trace(tower, raw, opset)
                task = (tower.name, tower.num_heads, tower.hidden_size, os.fspath(raw), fuse, precision)
                in_worker(postprocess_to, (*task, os.fspath(target), meta))
                if table is not None:
                    word_table.reattach(target, table)
        finally:
            raw.unlink(missing_ok=True)
        files[tower.name] = target
    if tokenizer is not None:
        from clamp2_engine.exporters.fastembed import write_fastembed_folder

        tokenizer.save_pretrained(os.fspath(out / TOKENIZER_DIR))
        files["tokenizer"] = out / TOKENIZER_DIR
        write_fastembed_folder(out, identity)  # the folder is also a fastembed model
        files["fastembed"] = out / FASTEMBED_JSON
    if "text" not in files and "text" in wanted:  # an M3 export replacing a CLaMP 2 one: no stale text graph
        for stale in (TEXT_FILE, FASTEMBED_JSON):
            (out / stale).unlink(missing_ok=True)
    verification: dict[str, float] = {}
    if verify:
        from clamp2_engine.exporters.verify import verify_export

        log("verifying against PyTorch")
        verification = verify_export(out, module, towers=tuple(files.keys() & {"music", "text"}))
    result = ExportResult(out, identity, precision, opset, files, verification, time.perf_counter() - start)
    manifest = {
        "format": FORMAT_VERSION,
        "identity": identity,
        "precision": precision,
        "opset": opset,
        "fused": fuse,
        "files": {k: v.name for k, v in files.items()},
        "verification": verification,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return result
