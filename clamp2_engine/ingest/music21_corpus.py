"""music21's bundled corpus as CLaMP 2 data: which pieces, their metadata, and texts describing them.

Every install of music21 carries ~15,000 scores (Bach chorales, folk-song and fiddle-tune books, Renaissance
and Classical works). This module picks a slice of them, converts it to interleaved ABC with
``music.convert`` and describes every piece from its metadata — genre, composer, number of voices, meter
and key signature — in English and, for multilingual training, in German, French or Spanish (template
sentences, not an LLM's summaries). The demo model (``clamp2_engine/assets/demo``) was trained on such data
and ``clamp2-engine demo`` ingests pieces prepared the same way.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from clamp2_engine.music.abc import abc_key_sharps, abc_meter, count_voices
from clamp2_engine.types import ABC_SUFFIXES, MUSICXML_SUFFIXES

# collection -> how many pieces to take (in corpus order); tune books count tunes, not files
QUOTAS: dict[str, int] = {
    "bach": 260,
    "essenFolksong": 240,
    "oneills1850": 220,
    "ryansMammoth": 220,
    "trecento": 100,
    "palestrina": 40,
    "monteverdi": 30,
    "corelli": 20,
    "mozart": 16,
    "haydn": 9,
    "josquin": 8,
}
COMPOSERS = {
    "bach": "J.S. Bach",
    "palestrina": "Palestrina",
    "monteverdi": "Monteverdi",
    "corelli": "Corelli",
    "mozart": "Mozart",
    "haydn": "Haydn",
    "josquin": "Josquin des Prez",
}  # when a piece's own metadata names none
FOLK = {"essenFolksong", "oneills1850", "ryansMammoth"}
GENRES = {
    "bach": "chorale",
    "essenFolksong": "folk song",
    "oneills1850": "Irish tune",
    "ryansMammoth": "fiddle tune",
    "trecento": "medieval song",
    "palestrina": "Renaissance mass movement",
    "monteverdi": "madrigal",
    "corelli": "trio sonata movement",
    "mozart": "string quartet movement",
    "haydn": "string quartet movement",
    "josquin": "Renaissance motet",
}
DANCES = ("hornpipe", "reel", "jig", "polka", "waltz", "march", "strathspey", "slide")
SUFFIXES = MUSICXML_SUFFIXES | ABC_SUFFIXES | {".krn"}  # the formats of the collections used

# Template translations: language -> words. Numbers are words so that any tokenizer reads them alike.
LANGUAGES = ("German", "French", "Spanish")
NUMBER_WORDS = {
    "English": ["no", "one", "two", "three", "four", "five", "six", "seven"],
    "German": ["keine", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben"],
    "French": ["aucun", "un", "deux", "trois", "quatre", "cinq", "six", "sept"],
    "Spanish": ["ningún", "un", "dos", "tres", "cuatro", "cinco", "seis", "siete"],
}
# genre -> (German, French, Spanish)
GENRE_TRANSLATIONS = {
    "chorale": ("Choral", "choral", "coral"),
    "folk song": ("Volkslied", "chanson populaire", "canción popular"),
    "Irish tune": ("irische Melodie", "air irlandais", "melodía irlandesa"),
    "fiddle tune": ("Fiddle-Stück", "air de violon", "melodía de violín"),
    "medieval song": ("mittelalterliches Lied", "chanson médiévale", "canción medieval"),
    "Renaissance mass movement": (
        "Messesatz der Renaissance",
        "mouvement de messe de la Renaissance",
        "movimiento de misa renacentista",
    ),
    "madrigal": ("Madrigal", "madrigal", "madrigal"),
    "trio sonata movement": (
        "Triosonatensatz",
        "mouvement de sonate en trio",
        "movimiento de sonata en trío",
    ),
    "string quartet movement": (
        "Streichquartettsatz",
        "mouvement de quatuor à cordes",
        "movimiento de cuarteto de cuerda",
    ),
    "Renaissance motet": ("Motette der Renaissance", "motet de la Renaissance", "motete renacentista"),
    "hornpipe": ("Hornpipe", "hornpipe", "hornpipe"),
    "reel": ("Reel", "reel", "reel"),
    "jig": ("Jig", "gigue", "giga"),
    "polka": ("Polka", "polka", "polca"),
    "waltz": ("Walzer", "valse", "vals"),
    "march": ("Marsch", "marche", "marcha"),
    "strathspey": ("Strathspey", "strathspey", "strathspey"),
    "slide": ("Slide", "slide", "slide"),
    "piece": ("Stück", "pièce", "pieza"),
}
TEMPLATES = {
    "German": {
        "by": " von {c}",
        "traditional": "Traditionelles {h}",
        "one": "einstimmig",
        "many": "für {n} Stimmen",
        "meter": "im {m}-Takt",
        "key": "Vorzeichen: {k}",
    },
    "French": {
        "by": " de {c}",
        "traditional": "{h} traditionnel",
        "one": "à une voix",
        "many": "pour {n} voix",
        "meter": "en {m}",
        "key": "armure : {k}",
    },
    "Spanish": {
        "by": " de {c}",
        "traditional": "{h} tradicional",
        "one": "a una voz",
        "many": "para {n} voces",
        "meter": "en compás de {m}",
        "key": "armadura: {k}",
    },
}
GENRE_WORDS = {
    language: {genre: words[i] for genre, words in GENRE_TRANSLATIONS.items()}
    for i, language in enumerate(LANGUAGES)
}


@dataclass(frozen=True)
class Piece:
    """One piece of the corpus: its file (relative to the corpus root), tune number and metadata."""

    collection: str
    path: str  # relative to the corpus root, posix
    number: int | None  # tune number in a tune book, else None
    name: str  # a file-name-safe key, unique in a selection
    fields: dict[str, Any]  # composer, collection, genre, voices, meter, key, title

    def as_item(self, abc_path: str) -> dict[str, Any]:
        """A seed-layout item (metadata, summaries, ``filepaths``), as the demo model was trained on."""
        return {**self.fields, **texts(self.fields, self.name), "filepaths": [abc_path]}


def display_title(rel: str, number: int | None = None) -> str:
    """A title for a piece whose metadata names none, from its corpus path: ``bach/bwv102.7.mxl`` ->
    "BWV 102.7", ``mozart/k155/movement1.mxl`` -> "K. 155, movement1"."""
    parts = PurePosixPath(rel).with_suffix("").parts[1:] or PurePosixPath(rel).with_suffix("").parts
    text = ", ".join(parts).replace("_", " ")
    text = re.sub(r"^bwv", "BWV ", text)
    text = re.sub(r"^k(\d)", r"K. \1", text)
    text = text[:1].upper() + text[1:]
    return f"{text} (no. {number})" if number is not None else text


def corpus_root() -> Path:
    """The folder of music21's bundled corpus (``.../music21/corpus``)."""
    from music21 import corpus

    return Path(corpus.getWork("bach/bwv66.6")).parents[1]


def tunes_in(path: Path) -> int:
    """Pieces a file holds: ``X:`` tunes in an ABC book, else 1."""
    if path.suffix != ".abc":
        return 1
    with open(path, encoding="utf-8", errors="replace") as fh:
        return max(1, sum(1 for line in fh if line.startswith("X:")))


def corpus_files(quotas: dict[str, int] | None = None) -> list[tuple[str, Path]]:
    """``(collection, path)`` in corpus order: for each collection the first files that fill its quota."""
    root = corpus_root()
    out = []
    for collection, quota in (quotas or QUOTAS).items():
        held = 0
        for p in sorted((root / collection).rglob("*")):
            if held >= quota:
                break
            if p.is_file() and p.suffix in SUFFIXES:
                out.append((collection, p))
                held += tunes_in(p)
    return out


def corpus_metadata() -> dict[tuple[str, int | None], Any]:
    """music21's metadata by (path relative to the corpus, tune number). Slow (~45 s): build time only."""
    from music21 import corpus

    return {(str(e.sourcePath), e.number): e.metadata for e in corpus.corpora.CoreCorpus().metadataBundle}


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


def key_words(sharps: int | None, language: str = "English") -> str | None:
    """``-2`` -> "two flats" (English), "zwei B" (German) ...; ``None`` when unknown or out of range."""
    if sharps is None or abs(sharps) >= len(NUMBER_WORDS["English"]):
        return None
    n, words = abs(sharps), NUMBER_WORDS[language]
    if language == "English":
        return (
            "no sharps or flats"
            if n == 0
            else f"{words[n]} {'sharp' if sharps > 0 else 'flat'}{'s' * (n > 1)}"
        )
    if language == "German":
        return "keine Vorzeichen" if n == 0 else f"{words[n]} {'Kreuz' if sharps > 0 else 'B'}"
    if language == "French":
        sign = "dièse" if sharps > 0 else "bémol"
        return "sans altération" if n == 0 else f"{words[n]} {sign}{'s' * (n > 1)}"
    sign = "sostenido" if sharps > 0 else "bemol"
    return (
        "sin alteraciones"
        if n == 0
        else f"{words[n]} {sign}{'s' * (n > 1) if sharps > 0 else 'es' * (n > 1)}"
    )


def metadata_fields(collection: str, meta: Any, abc: str, title: str | None = None) -> dict[str, Any]:
    """The fields a piece is described by (``None`` ones dropped). A collection of one composer names
    them (music21's per-piece composer field is sometimes a title); meter and key come from music21's
    metadata, else from the ABC header."""
    composer = COMPOSERS.get(collection) or getattr(meta, "composer", None)
    if not composer and collection in FOLK:
        composer = "traditional"
    title = title or getattr(meta, "title", None) or None
    genre = GENRES.get(collection, "piece")
    dance = next((d for d in DANCES if title and re.search(rf"\b{d}s?\b", title, re.I)), None)
    fields = {
        "title": title,
        "composer": composer,
        "collection": collection,
        "genre": dance or genre,
        "voices": count_voices(abc),
        "meter": getattr(meta, "timeSignatureFirst", None) or abc_meter(abc),
        "key_sharps": _first_int(getattr(meta, "keySignatureFirst", None), abc_key_sharps(abc)),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _first_int(*values: Any) -> int | None:
    return next((int(v) for v in values if isinstance(v, int) and not isinstance(v, bool)), None)


def describe(fields: dict[str, Any], language: str = "English") -> str:
    """One sentence describing a piece from its fields, in English, German, French or Spanish."""
    genre, composer = fields.get("genre", "piece"), fields.get("composer")
    voices, meter = int(fields.get("voices", 1)), fields.get("meter")
    key = key_words(fields.get("key_sharps"), language)
    n = NUMBER_WORDS[language][voices] if voices < len(NUMBER_WORDS[language]) else str(voices)
    if language == "English":
        head = f"A {genre}" if not composer or composer == "traditional" else f"A {genre} by {composer}"
        if composer == "traditional":
            head = f"A traditional {genre}"
        parts = [head, "for a single melody line" if voices == 1 else f"for {n} voices"]
        parts += [f"in {meter} time"] if meter else []
        parts += [f"with a key signature of {key}"] if key else []
        parts += [f"from the {fields['collection']} collection"] if fields.get("collection") else []
        return ", ".join(parts) + "."
    t, g = TEMPLATES[language], GENRE_WORDS[language].get(genre, genre)
    head = f"{g[0].upper()}{g[1:]}" + (
        t["by"].format(c=composer) if composer and composer != "traditional" else ""
    )
    head = t["traditional"].format(h=head) if composer == "traditional" else head
    parts = [head, t["one"] if voices == 1 else t["many"].format(n=n)]
    parts += [t["meter"].format(m=meter)] if meter else []
    parts += [t["key"].format(k=key)] if key else []
    return ", ".join(parts) + "."


def texts(fields: dict[str, Any], name: str) -> dict[str, Any]:
    """``summary_en`` and a ``summary_nen`` in a language fixed by the piece's name."""
    language = LANGUAGES[zlib.crc32(name.encode()) % len(LANGUAGES)]
    return {
        "summary_en": describe(fields),
        "summary_nen": {"language": language, "summary": describe(fields, language)},
    }


def _convert(task: tuple[str, str]) -> list[tuple[str, str]]:
    """Worker: ``(collection, path)`` -> ``[(suffix, interleaved abc)]``."""
    from clamp2_engine.music.convert import score_to_interleaved_abc

    return score_to_interleaved_abc(Path(task[1]))


def convert_pieces(
    files: Iterable[tuple[str, Path]], jobs: int = 2, timeout: float = 120.0
) -> Iterator[tuple[str, Path, list[tuple[str, str]] | None, str | None]]:
    """``(collection, path, pieces, error)`` for each file, converted in worker processes (any order)."""
    from clamp2_engine.music.convert.batch import PRELOAD, quiet_worker
    from clamp2_engine.workers import run_tasks

    tasks = [(c, str(p)) for c, p in files]
    for o in run_tasks(
        _convert, tasks, jobs=jobs, timeout=timeout, initializer=quiet_worker, preload=PRELOAD
    ):
        collection, path = o.task
        yield collection, Path(path), (o.result if o.ok else None), (None if o.ok else o.error)


def tune_title(abc_source: Path, number: int | None) -> str | None:
    """The ``T:`` title of tune ``X:number`` of an ABC book (the score's title otherwise)."""
    if abc_source.suffix != ".abc":
        return None
    current, title = None, None
    for line in abc_source.read_text("utf-8", errors="replace").splitlines():
        if line.startswith("X:"):
            current = int(line[2:].strip()) if line[2:].strip().isdigit() else None
        elif line.startswith("T:") and current == number and title is None:
            title = line[2:].strip() or None
    return title


def select(
    quotas: dict[str, int] | None = None, jobs: int = 2, metadata: dict | None = None, progress: bool = True
) -> list[tuple[Piece, str]]:
    """Convert a slice of the corpus: ``(piece, interleaved abc)`` in corpus order, quotas applied."""
    from clamp2_engine.runlog import progress_bar

    quotas = quotas or QUOTAS
    root = corpus_root()
    metadata = corpus_metadata() if metadata is None else metadata
    files = corpus_files(quotas)
    order = {str(p): i for i, (_c, p) in enumerate(files)}
    converted: dict[str, list[tuple[str, str]]] = {}
    with progress_bar("converting music21's corpus", len(files), enabled=progress) as advance:
        for _c, path, pieces, _error in convert_pieces(files, jobs):
            advance()
            if pieces:
                converted[str(path)] = pieces
    out: list[tuple[Piece, str]] = []
    counts: Counter[str] = Counter()
    used: set[str] = set()
    for collection, path in sorted(files, key=lambda f: order[str(f[1])]):
        rel = path.relative_to(root).as_posix()
        for suffix, abc in converted.get(str(path), []):
            if counts[collection] >= quotas[collection]:
                break
            number = int(suffix[1:]) if suffix[1:].isdigit() else None
            meta = metadata.get((rel, number)) or metadata.get((rel, None))
            name = base = safe_name(f"{collection}_{Path(rel).stem}{suffix}")
            while name in used:  # the same stem with another extension (a.xml, a.mxl)
                name = f"{base}_{len(used)}"
            used.add(name)
            fields = metadata_fields(collection, meta, abc, tune_title(path, number))
            out.append((Piece(collection, rel, number, name, fields), abc))
            counts[collection] += 1
    return out


def write_seed(dst: Path, pieces: list[tuple[Piece, str]], items_name: str = "items.jsonl") -> list[dict]:
    """Write ``dst/abc/NAME.abc`` and ``dst/items_name`` (seed layout); returns the items."""
    from clamp2_engine.paths import atomic_write_text

    items = []
    for piece, abc in pieces:
        rel = f"abc/{piece.name}.abc"
        atomic_write_text(dst / rel, abc)
        items.append(piece.as_item(rel))
    atomic_write_text(dst / items_name, "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    return items


def split(items: list[dict], eval_fraction: float = 0.1, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """A seeded train / held-out split."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[: max(1, int(len(items) * eval_fraction))])
    return [it for i, it in enumerate(items) if i not in held], [
        it for i, it in enumerate(items) if i in held
    ]
