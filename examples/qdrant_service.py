"""A service that searches a clamp2-engine collection with only ``qdrant-client[fastembed]`` installed: no
clamp2-engine, torch or transformers. It registers the model from an export's ``fastembed.json`` and asks
Qdrant with ``models.Document``: qdrant-client embeds the text with fastembed, as clamp2-engine would.

    pip install 'qdrant-client[fastembed]'
    python qdrant_service.py --export ./clamp2-onnx --url http://localhost:6333 -c music "a sad waltz"

Each piece is ranked by its best score over the ``abc`` and ``mtf`` vectors (ties by id), as
``clamp2-engine search --mode semantic`` ranks it. ``--points FILE`` (a JSON list of points) loads a copy
of a collection into qdrant-client's in-memory mode instead of a server; ``--vectors`` prints the query
vectors too. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
from qdrant_client import QdrantClient, models


def register(export: str | Path) -> tuple[str, str]:
    """Register an export's text model with fastembed; ``(model name, specific_model_path)``."""
    spec = json.loads((Path(export) / "fastembed.json").read_text(encoding="utf-8"))
    folder = str(Path(export) / spec.pop("folder"))
    spec["pooling"] = PoolingType[spec["pooling"]]
    if spec["model"] not in {m["model"] for m in TextEmbedding.list_supported_models()}:
        TextEmbedding.add_custom_model(sources=ModelSource(hf="clamp2-engine/local-export"), **spec)
    return spec["model"], folder


def search(client: QdrantClient, collection: str, text: str, model: str, folder: str, k: int = 10) -> list:
    """The ``k`` best pieces for ``text``: each by its best score over ``abc`` and ``mtf`` (ties by id)."""
    query = models.Document(text=text, model=model, options={"specific_model_path": folder})
    requests = [
        models.QueryRequest(query=query, using=name, limit=k, with_payload=True) for name in ("abc", "mtf")
    ]
    best: dict = {}
    for answer in client.query_batch_points(collection, requests):
        for point in answer.points:
            if point.id not in best or point.score > best[point.id].score:
                best[point.id] = point
    return sorted(best.values(), key=lambda p: (-p.score, str(p.id)))[:k]


def load_copy(path: str, collection: str) -> QdrantClient:
    """qdrant-client's in-memory mode holding the points of a JSON dump (the tests' copy of a collection)."""
    points = json.loads(Path(path).read_text(encoding="utf-8"))
    client = QdrantClient(":memory:")
    dims = {name: len(vector) for p in points for name, vector in p["vector"].items()}
    config = {name: models.VectorParams(size=d, distance=models.Distance.COSINE) for name, d in dims.items()}
    client.create_collection(collection, vectors_config=config)
    client.upsert(collection, [models.PointStruct(**p) for p in points])
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", nargs="+")
    parser.add_argument("--export", required=True, help="a folder written by `clamp2-engine export onnx`")
    parser.add_argument("-c", "--collection", default="music")
    parser.add_argument("--url", help="a Qdrant server")
    parser.add_argument("--points", help="a JSON list of points, searched in qdrant-client's in-memory mode")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--vectors", action="store_true", help="print the query vectors too")
    args = parser.parse_args()
    model, folder = register(args.export)
    client = load_copy(args.points, args.collection) if args.points else QdrantClient(url=args.url)
    out: dict = {
        "hits": [],
        "imported": sorted(
            {m.split(".")[0] for m in sys.modules} & {"clamp2_engine", "torch", "transformers"}
        ),
    }
    for text in args.texts:
        out["hits"].append(
            [
                {"id": str(p.id), "score": p.score, "title": (p.payload or {}).get("title")}
                for p in search(client, args.collection, text, model, folder, args.k)
            ]
        )
    if args.vectors:
        embedder = TextEmbedding(model, specific_model_path=folder)
        out["vectors"] = [v.tolist() for v in embedder.embed(args.texts)]
    out["imported"] = sorted(
        {m.split(".")[0] for m in sys.modules} & {"clamp2_engine", "torch", "transformers"}
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
