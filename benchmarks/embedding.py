"""What the embedding benchmarks share: the full-size model, the strategies, interleaved timing, the floor.

``bench_embed.py`` (CPU) and ``bench_gpu.py`` (one GPU) time the same strategies on the same corpus with
the same code: the reference extractor's strategy, the engine on PyTorch at each precision, and the engine
on ONNX Runtime (fp32, int8, fp16). Every strategy is a ``Runner``: ``run(modality, files) -> features``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
BENCH = FIXTURES / "bench-corpus"
TEXT_MODEL = FIXTURES / "clamp2-parity" / "text_model"
MODALITIES = {"abc": "music", "mtf": "music", "txt": "text"}

Runner = Callable[[str, list[Path]], list[np.ndarray]]


def corpus(limit: int | None = None, root: Path = BENCH) -> dict[str, list[Path]]:
    """The bench corpus's files per sub-folder (``abc``, ``mtf``, ``txt``), ``limit`` of each."""
    return {sub: sorted((root / sub).glob(f"*.{sub}"))[:limit] for sub in MODALITIES}


def checkpoint(folder: Path, small: bool = False) -> Path:
    """A random-weight CLaMP 2 in the reference format: the released shape (M3 768/12, XLM-R base 768/12,
    250002 tokens), or with ``small`` a 2-layer 256-d one for smoke runs. Kept in ``folder`` across runs."""
    import torch

    from clamp2_engine.checkpoints import save_checkpoint
    from clamp2_engine.models import CLaMP2Config, CLaMP2Model
    from clamp2_engine.models.config import M3Config, TextConfig

    path = folder / ("clamp2-random-small.pth" if small else "clamp2-random-base.pth")
    if path.is_file():
        return path
    torch.manual_seed(0)
    config = CLaMP2Config()
    if small:
        config = CLaMP2Config(
            music=M3Config(hidden_size=256, num_layers=2),
            text=TextConfig(
                vocab_size=1000, hidden_size=256, num_layers=2, num_heads=4, intermediate_size=1024
            ),
            embed_dim=256,
        )
    folder.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, CLaMP2Model(config).state_dict())


def export(ckpt: Path, folder: Path, precision: str = "fp32") -> Path:
    """``ckpt`` exported to ONNX at ``precision`` into ``folder/onnx-<precision>-<stem>`` (kept across
    runs), by ``clamp2-engine export onnx`` in its own process: an export holds several copies of the model
    at once, memory a benchmark holding other models does not have."""
    from clamp2_engine.runtime.onnx_folder import peek_identity

    out = folder / f"onnx-{precision}-{ckpt.stem}"
    if peek_identity(out) is None:
        flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8"]}[precision]
        command = [
            sys.executable, "-m", "clamp2_engine", "export", "onnx", "--model", str(ckpt), "--text-model",
            str(TEXT_MODEL), "--out", str(out), "--no-verify", "--overwrite", *flags,
        ]  # fmt: skip
        print(f"exported {ckpt.name} ({precision}) in {whole_process(command):.0f} s", flush=True)
    return out


def engine(model) -> Runner:
    """A runner over a loaded :class:`clamp2_engine.CLaMP2` (either backend)."""

    def run(modality: str, files: list[Path]) -> list[np.ndarray]:
        encode = model.encode_music if modality == "music" else model.encode_text
        return list(encode(files, show_progress=False))

    return run


def torch_engine(ckpt: Path, dtype: str, device: str = "cpu", **batching) -> Runner:
    from clamp2_engine import CLaMP2

    return engine(CLaMP2.from_pretrained(ckpt, TEXT_MODEL, device=device, dtype=dtype, **batching))


def onnx_engine(folder: Path, device: str = "cpu", **batching) -> Runner:
    from clamp2_engine import CLaMP2

    return engine(CLaMP2.from_pretrained(backend="onnx", onnx_dir=folder, device=device, **batching))


def reference(ckpt: Path, device: str = "cpu") -> Runner:
    """The reference extractor's strategy (one file a pass, fixed padding, one-hot, eager, fp32)."""
    from benchmarks.reference_strategy import ReferenceExtractor

    ref = ReferenceExtractor(ckpt, TEXT_MODEL, device=device)
    return lambda modality, files: [ref.music(f) if modality == "music" else ref.text(f) for f in files]


@dataclass
class Timing:
    """One strategy's seconds per round and last features, per corpus sub-folder."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    feats: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def best(self, sub: str) -> float:
        return min(self.seconds[sub])

    def total(self) -> float:
        return sum(self.best(s) for s in self.seconds)

    def spread(self) -> float:
        """Slowest over fastest whole-corpus round (1.0: steady)."""
        rounds = [sum(r) for r in zip(*self.seconds.values(), strict=True)]
        return max(rounds) / min(rounds)


def interleaved(
    runners: dict[str, Runner],
    files: dict[str, list[Path]],
    rounds: int,
    sync: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Timing], list[float]]:
    """Per sub-folder, ``rounds`` rounds each running every strategy once in rotating order (so a shared
    machine's changing load does not favour one); best round counts. Also the 1-minute load averages."""
    timings = {name: Timing() for name in runners}
    loads = [os.getloadavg()[0]]
    for sub, modality in MODALITIES.items():
        for run in runners.values():
            run(modality, files[sub][:2])  # warm-up: kernels, allocator, caches
        for r in range(rounds):
            names = list(runners)
            names = names[r % len(names) :] + names[: r % len(names)]
            for name in names:
                sync()
                t0 = time.perf_counter()
                feats = runners[name](modality, files[sub])
                sync()
                dt = time.perf_counter() - t0
                timings[name].seconds.setdefault(sub, []).append(dt)
                timings[name].feats[sub] = feats
                print(f"{name[:64]:64s} {sub} round {r + 1}: {len(files[sub]) / dt:8.2f} files/s", flush=True)
            loads.append(os.getloadavg()[0])
    return timings, loads


def worst_cosine(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return min(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b, strict=True))


def window_spans(
    files: dict[str, list[Path]], patch_length: int = 512, text_length: int = 128
) -> dict[str, list[tuple[int, list[tuple[int, int]]]]]:
    """Per sub-folder, each file's window size and the engine's windows over its patches or tokens."""
    from transformers import AutoTokenizer

    from clamp2_engine.encoder import read_text_file, windows
    from clamp2_engine.music.patches import encode_patches
    from clamp2_engine.music.text import join_for_tokenizer

    tok = AutoTokenizer.from_pretrained(TEXT_MODEL)
    out: dict[str, list[tuple[int, list[tuple[int, int]]]]] = {}
    for sub, modality in MODALITIES.items():
        out[sub] = []
        for f in files[sub]:
            if modality == "music":
                n, size = len(encode_patches(read_text_file(f))), patch_length
            else:
                n, size = (
                    len(tok(join_for_tokenizer(read_text_file(f), tok.sep_token))["input_ids"]),
                    text_length,
                )
            out[sub].append((size, windows(n, size)))
    return out


def floors(files: dict[str, list[Path]], patch_length: int = 512, text_length: int = 128) -> dict[str, float]:
    """Per sub-folder, the reference's positions over the engine's: the speed-up the engine's saving of
    work alone gives at equal cost per position (the compute floor at fp32 parity). The reference pads every
    window to full length; the engine computes each window's real positions (the overlapping last window
    of a long piece included, as parity requires)."""
    out = {}
    for sub, pieces in window_spans(files, patch_length, text_length).items():
        ref = sum(len(spans) * size for size, spans in pieces)
        mine = sum(e - s for _size, spans in pieces for s, e in spans)
        out[sub] = ref / max(mine, 1)
    return out


def model_flops(
    files: dict[str, list[Path]],
    music: tuple[int, int, int],
    text: tuple[int, int, int],
    patch_length: int = 512,
    text_length: int = 128,
) -> dict[str, float]:
    """Useful forward FLOPs per sub-folder: every window's real positions through the tower's encoder
    layers (``(hidden, layers, ffn)``), 2 FLOPs a multiply-add: per layer, projections and feed-forward
    ``2 n (4 H^2 + 2 H F)`` and attention ``4 n^2 H``. Padding, the patch embedding (a gather) and the
    pooling are not counted: what an ideal engine must compute."""
    out = {}
    for sub, pieces in window_spans(files, patch_length, text_length).items():
        hidden, layers, ffn = music if MODALITIES[sub] == "music" else text
        positions = [e - s for _size, spans in pieces for s, e in spans]
        out[sub] = sum(
            layers * (2 * m * (4 * hidden**2 + 2 * hidden * ffn) + 4 * m * m * hidden) for m in positions
        )
    return out


def whole_process(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of one process, start-up included; a failure is an error with its output."""
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command[:4])}... failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def engine_process(ckpt: Path, src: Path, dst: Path, *flags: str) -> list[str]:
    """The ``clamp2-engine embed`` command for ``src`` with the benchmark model."""
    return [
        sys.executable, "-m", "clamp2_engine", "embed", str(src), str(dst), "--pooled", "--model", str(ckpt),
        "--text-model", str(TEXT_MODEL), "--quiet", "--overwrite", *flags,
    ]  # fmt: skip


def reference_process(ckpt: Path, src: Path, dst: Path, device: str = "cpu") -> list[str]:
    """The reference strategy as its own process (``benchmarks/reference_strategy.py``)."""
    script = ROOT / "benchmarks" / "reference_strategy.py"
    return [sys.executable, str(script), str(ckpt), str(TEXT_MODEL), str(src), str(dst), "--device", device]
