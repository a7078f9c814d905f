"""The names the engine uses for its kinds of things, once: ``Literal`` types (the CLI's choices derive from
them) and the file-suffix sets of every format."""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["clamp2", "m3"]
VectorName = Literal["abc", "mtf", "text"]  # the named vectors of a collection
Modality = Literal["abc", "mtf", "text", "any"]  # what a search looks at; "any": abc and mtf, best score
Mode = Literal["hybrid", "semantic", "lexical"]  # how a text query is matched: meaning and words, or one
RuntimeBackend = Literal["torch", "onnx"]  # what runs a model (`--backend`); store engines are store.backend
Dtype = Literal[
    "auto", "fp32", "bf16", "fp16"
]  # precision of inference and training ("auto": per device and CPU)

KINDS: tuple[str, ...] = get_args(Kind)
VECTORS: tuple[str, ...] = get_args(VectorName)
MUSIC_VECTORS: tuple[str, ...] = ("abc", "mtf")
MODALITIES: tuple[str, ...] = get_args(Modality)
MODES: tuple[str, ...] = get_args(Mode)
BACKENDS: tuple[str, ...] = get_args(RuntimeBackend)
DTYPES: tuple[str, ...] = get_args(Dtype)

# --- file suffixes (lower case, with the dot) ------------------------------------------------------
ABC_SUFFIXES = frozenset({".abc"})
MTF_SUFFIXES = frozenset({".mtf"})
MIDI_SUFFIXES = frozenset({".mid", ".midi"})
TEXT_SUFFIXES = frozenset({".txt"})
MUSICXML_SUFFIXES = frozenset({".xml", ".musicxml", ".mxl"})
HUMDRUM_SUFFIXES = frozenset({".krn"})
MEI_SUFFIXES = frozenset({".mei"})
# Other score formats music21 reads; each is canonicalised through MusicXML.
MUSIC21_SUFFIXES = frozenset(
    {
        ".krn",
        ".mei",
        ".rntxt",
        ".rntext",
        ".romantext",
        ".rtxt",
        ".capx",
        ".nwc",
        ".nwctxt",
        ".musedata",
        ".tntxt",
    }
)
SCORE_SUFFIXES = MUSICXML_SUFFIXES | ABC_SUFFIXES | MUSIC21_SUFFIXES
MODEL_MUSIC_SUFFIXES = ABC_SUFFIXES | MTF_SUFFIXES  # music the model reads as it is

LEXICAL_WEIGHT = (
    1.25  # hybrid: the words' weight against meaning's 1.0 in the fusion (swept in bench_hybrid.py)
)
