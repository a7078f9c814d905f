"""The reference extractor's strategy, re-implemented as a baseline for benchmarks.

One file per forward pass, every window padded to 512 patches / 128 tokens, a one-hot patch embedding
(``Linear(8192, H)`` on a one-hot matrix), eager attention, fp32: what the CLaMP 2 reference code does.

As a process (whole-process timings, start-up included, as ``extract_clamp2.py`` runs)::

    python benchmarks/reference_strategy.py CKPT TEXT_MODEL SRC DST [--device cpu|cuda]
"""

from __future__ import annotations

import torch
from torch import nn

from clamp2_engine.checkpoints import load_checkpoint
from clamp2_engine.encoder import read_text_file
from clamp2_engine.models.clamp2 import masked_mean
from clamp2_engine.models.factory import build_clamp2, load_text_assets
from clamp2_engine.music.patches import PAD_ID, encode_patches
from clamp2_engine.music.text import join_for_tokenizer


class OneHotPatchEmbedding(nn.Module):
    """The reference's patch embedding: one-hot ``[B, L, P*128]`` times ``Linear(P*128, H)``."""

    def __init__(self, linear: nn.Linear, alphabet: int = 128):
        super().__init__()
        self.linear, self.alphabet = linear, alphabet

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        one_hot = nn.functional.one_hot(patches, num_classes=self.alphabet)
        return self.linear(one_hot.reshape(patches.shape[0], patches.shape[1], -1).float())


class ReferenceExtractor:
    """Pooled (``get_normalized``) features, file by file, as ``extract_clamp2.py`` computes them."""

    def __init__(self, checkpoint, text_model, max_text_length: int = 128, device: str = "cpu"):
        hf_config, self.tokenizer = load_text_assets(text_model)
        state = load_checkpoint(checkpoint)["model"]
        self.device = torch.device(device)
        self.model = build_clamp2(state, hf_config, attn_implementation="eager").eval().to(self.device)
        enc = self.model.music_model
        self.one_hot = OneHotPatchEmbedding(enc.patch_embedding)
        self.patch_length = enc.config.patch_length
        self.patch_size = enc.config.patch_size
        self.max_text_length = max_text_length

    def _segments(self, ids: torch.Tensor, size: int) -> list[torch.Tensor]:
        segs = [ids[i : i + size] for i in range(0, len(ids), size)]
        segs[-1] = ids[-size:]
        return segs

    @torch.no_grad()
    def music(self, path) -> torch.Tensor:
        ids = torch.from_numpy(encode_patches(read_text_file(path), self.patch_size)).to(self.device).long()
        return self._pooled(ids, self.patch_length, "music")

    @torch.no_grad()
    def text(self, path) -> torch.Tensor:
        joined = join_for_tokenizer(read_text_file(path), self.tokenizer.sep_token)
        ids = torch.tensor(self.tokenizer(joined)["input_ids"], device=self.device)
        return self._pooled(ids, self.max_text_length, "text")

    def _pooled(self, ids: torch.Tensor, size: int, modality: str) -> torch.Tensor:
        feats = []
        for seg in self._segments(ids, size):
            n = seg.shape[0]
            mask = torch.cat([torch.ones(n), torch.zeros(size - n)]).unsqueeze(0).to(self.device)
            if modality == "music":
                pad = torch.full((size - n, self.patch_size), PAD_ID, dtype=torch.long, device=self.device)
                x = torch.cat([seg, pad]).unsqueeze(0)
                hidden = self.model.music_model.base(inputs_embeds=self.one_hot(x), attention_mask=mask)
                feats.append(self.model.music_proj(masked_mean(hidden.last_hidden_state, mask)))
            else:
                pad = torch.full(
                    (size - n,), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device
                )
                x = torch.cat([seg, pad]).unsqueeze(0)
                hidden = self.model.text_model(input_ids=x, attention_mask=mask).last_hidden_state
                feats.append(self.model.text_proj(masked_mean(hidden, mask)))
        full, rem = divmod(len(ids), size)
        weights = torch.tensor(
            [size] * full + ([rem] if rem else []), dtype=torch.float32, device=self.device
        )
        pooled = (torch.cat(feats) * weights.view(-1, 1)).sum(0) / weights.sum()
        return pooled.cpu().numpy()


def main(argv: list[str] | None = None) -> None:
    """Embed every .abc / .mtf / .txt under SRC into DST/<same path>.npy, one file at a time."""
    import argparse
    from pathlib import Path

    import numpy as np

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("text_model")
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    ref = ReferenceExtractor(args.checkpoint, args.text_model, device=args.device)
    for path in sorted(args.src.rglob("*")):
        if path.suffix not in (".abc", ".mtf", ".txt"):
            continue
        feat = ref.text(path) if path.suffix == ".txt" else ref.music(path)
        out = args.dst / path.relative_to(args.src).with_suffix(path.suffix + ".npy")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, feat[None])


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
