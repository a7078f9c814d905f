"""The text tower's word embeddings kept out of the export's in-memory work.

XLM-R's table (250,002 x 768 floats, 768 MB) is most of the text graph, and every step of an export
(tracing, ONNX Runtime's optimizer, the quantizer, saving) holds one or more copies of the whole graph in
memory. So the tower is traced, optimized and quantized with a stand-in of :data:`ROWS` rows in place of
the table, and the real table is then written once, straight from the PyTorch tensor, into the finished
graph's external data file (:func:`reattach`). The table stays in float (fp16 in an fp16 export): int8
exports quantize the matrix products, not the embedding gather.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROWS = 3  # the stand-in's rows: a shape no other initializer of the graph has
ALIGN = 4096  # the table's offset in the data file: page-aligned, so ONNX Runtime can map it
CHUNK_ROWS = 8192


@contextmanager
def stand_in(embedding: nn.Embedding) -> Iterator[torch.Tensor]:
    """``embedding``'s table swapped for its first :data:`ROWS` rows for the block; yields the real one."""
    real = embedding.weight
    embedding.weight = nn.Parameter(real.detach()[:ROWS].clone(), requires_grad=False)
    try:
        yield real.detach()
    finally:
        embedding.weight = real


def example_ids(ids: torch.Tensor) -> torch.Tensor:
    """Example token ids that the stand-in can look up (tracing runs the model once)."""
    return ids.remainder(ROWS)


def reattach(graph: Path, table: torch.Tensor) -> None:
    """Put ``table`` where the finished graph at ``graph`` has the stand-in: its bytes appended to the
    graph's external data file (created if the graph has none) and the stand-in pointed at them."""
    import onnx

    proto = onnx.load(str(graph), load_external_data=False)
    rows, hidden = table.shape
    found = [t for t in proto.graph.initializer if list(t.dims) == [ROWS, hidden]]
    if len(found) != 1:
        raise RuntimeError(f"{graph.name}: expected one {ROWS}x{hidden} stand-in table, found {len(found)}")
    tensor = found[0]
    dtypes = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16}
    if tensor.data_type not in dtypes:
        raise RuntimeError(
            f"{graph.name}: the word table became {onnx.TensorProto.DataType.Name(tensor.data_type)}"
        )
    dtype = dtypes[tensor.data_type]
    data = graph.with_name(graph.name + ".data")
    source = table.detach().float().cpu().numpy()
    with open(data, "ab") as fh:
        offset = fh.tell()
        fh.write(b"\0" * (-offset % ALIGN))
        offset = fh.tell()
        for start in range(0, rows, CHUNK_ROWS):
            fh.write(np.ascontiguousarray(source[start : start + CHUNK_ROWS], dtype=dtype).tobytes())
    for name in ("raw_data", "float_data", "int32_data"):
        tensor.ClearField(name)
    del tensor.dims[:]
    tensor.dims.extend([rows, hidden])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    length = rows * hidden * np.dtype(dtype).itemsize
    for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tmp = graph.with_name(f".{graph.name}.reattach.tmp")
    try:
        onnx.save_model(proto, str(tmp))
        tmp.replace(graph)
    finally:
        tmp.unlink(missing_ok=True)
