"""The summary prompt of CLaMP 2 (reference section 6), its 100 languages, and answer validation.

The system prompt, the worked example and the "too little information" example follow the reference's
``process_data/gpt4_summarize.py`` (MIT), so that summaries written here match the distribution the
released checkpoints were trained on. The only change is a well-formed JSON shape in the system prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

_LANGUAGE_TEXT = """Afrikaans|Amharic|Arabic|Assamese|Azerbaijani|Belarusian|Bulgarian|Bengali|Bengali (Romanized)|Breton|
    Bosnian|Catalan|Czech|Welsh|Danish|German|Greek|Esperanto|Spanish|Estonian|Basque|Persian|Finnish|French|
    Western Frisian|Irish|Scottish Gaelic|Galician|Gujarati|Hausa|Hebrew|Hindi|Hindi (Romanized)|Croatian|
    Hungarian|Armenian|Indonesian|Icelandic|Italian|Japanese|Javanese|Georgian|Kazakh|Khmer|Kannada|Korean|
    Kurdish (Kurmanji)|Kyrgyz|Latin|Lao|Lithuanian|Latvian|Malagasy|Macedonian|Malayalam|Mongolian|Marathi|
    Malay|Burmese|Burmese (Romanized)|Nepali|Dutch|Norwegian|Oromo|Oriya|Punjabi|Polish|Pashto|Portuguese|
    Romanian|Russian|Sanskrit|Sindhi|Sinhala|Slovak|Slovenian|Somali|Albanian|Serbian|Sundanese|Swedish|
    Swahili|Tamil|Tamil (Romanized)|Telugu|Telugu (Romanized)|Thai|Filipino|Turkish|Uyghur|Ukrainian|Urdu|
    Urdu (Romanized)|Uzbek|Vietnamese|Xhosa|Yiddish|Chinese (Simplified)|Chinese (Traditional)|Cantonese"""
LANGUAGES: tuple[str, ...] = tuple(name.strip() for name in _LANGUAGE_TEXT.split("|"))

SUMMARY_KEYS = ("summary_en", "summary_nen")

SYSTEM = """Your task is to provide a concise, comprehensive, and coherent summary of the music piece using the provided metadata. Please write the summary in English first, and then write an equivalent summary in the specified non-English language from the "nen_language" field. Use this JSON format:
{
  "summary_en": "Your English summary here.",
  "summary_nen": {
    "language": "Specified non-English language.",
    "summary": "Your non-English summary here."
  }
}
If there is not enough music-related information, return `None` instead.
"""

EXAMPLE_USER = """{
    "title": "Brejeiro",
    "composer": "Ernesto Nazareth",
    "genres": ["Choro", "Classical", "Instrumental"],
    "description": "\\"Brejeiro\\" is in A major and 2/4 time. A joyful melody begins at bar six, and a lively tango rhythm starts at bar fourteen. It has a D.C. al Fine at bar fifty-three and ends on two quarter notes in bar thirty-seven. The piece, with its vibrant melodies and rhythms, reflects celebration and carefreeness, embodying the spirit of Brazilian music.",
    "tags": ["Brazilian", "Choro", "Piano"],
    "ensembles": ["Solo Piano", "Small Ensemble"],
    "instruments": ["Piano"],
    "nen_language": "Japanese"
}
"""

EXAMPLE_ASSISTANT = """{
    "summary_en": "Brejeiro, composed by Ernesto Nazareth, is a lively choro piece in A major and 2/4 time. It features a joyful melody that begins at bar six and a vibrant tango rhythm introduced at bar fourteen. The piece includes a D.C. al Fine at bar fifty-three, concluding on two quarter notes in bar thirty-seven. With its themes of celebration and carefreeness, Brejeiro beautifully captures the essence of Brazilian music and is well-suited for solo piano and small ensembles.",
    "summary_nen": {
    "language": "Japanese",
    "summary": "「ブレジェイロ」は、エルネスト・ナザレが作曲した活気あふれるショーロの作品で、イ長調の2/4拍子で書かれています。第6小節から始まる喜びに満ちたメロディーと、第14小節で導入される活気あるタンゴのリズムが特徴です。この曲には、第53小節でのD.C. al Fineが含まれ、また第37小節で二つの四分音符で締めくくられています。「ブレジェイロ」は、お祝いと無邪気さのテーマを持ち、ブラジル音楽の本質を美しく捉えており、ソロピアノや小編成のアンサンブルにぴったりの作品です。"
  }
}
"""

NONE_USER = """{
    "title": "Untitled",
    "composer": "Unknown",
    "description": "This is a good song.",
    "nen_language": "Russian"
}
"""

NONE_ASSISTANT = "None"


def resolve_languages(names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The language pool: all 100 by default, else the given names (comma-separated or a list) mapped
    case-insensitively onto the reference's spelling. Unknown names raise ``ValueError``."""
    if names is None:
        return LANGUAGES
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else [n.strip() for n in names]
    wanted = [n for n in wanted if n]
    by_fold = {lang.casefold(): lang for lang in LANGUAGES}
    out: list[str] = []
    for name in wanted:
        lang = by_fold.get(name.casefold())
        if lang is None:
            close = get_close_matches(name, LANGUAGES, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(
                f"unknown language {name!r}{hint}; one of the {len(LANGUAGES)}: {', '.join(LANGUAGES)}"
            )
        if lang not in out:
            out.append(lang)
    if not out:
        raise ValueError("no language given")
    return tuple(out)


def build_messages(metadata: dict[str, Any], language: str) -> list[dict[str, str]]:
    """Chat messages for one piece: system prompt, the two examples, then the piece's metadata
    (without ``filepaths``, null fields dropped) with ``nen_language`` added."""
    payload = {k: v for k, v in metadata.items() if v is not None}
    payload["nen_language"] = language
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": EXAMPLE_USER},
        {"role": "assistant", "content": EXAMPLE_ASSISTANT},
        {"role": "user", "content": NONE_USER},
        {"role": "assistant", "content": NONE_ASSISTANT},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False, indent=4)},
    ]


@dataclass(frozen=True)
class Answer:
    """A checked model answer: ``kind`` is ``ok``, ``none`` (too little information), ``invalid_json``,
    ``bad_shape`` or ``wrong_language``; ``summaries`` is set when ``ok``."""

    kind: str
    reason: str = ""
    summaries: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.S)
_NONE_WORDS = {"none", "null"}


def _json_candidates(text: str):
    yield text
    for m in _FENCE.finditer(text):
        yield m.group(1).strip()
    start = text.find("{")
    if start >= 0:
        try:
            yield json.JSONDecoder().raw_decode(text[start:])[0]
        except ValueError:
            pass


def parse_answer(text: str | None, language: str) -> Answer:
    """Validate a model answer for a request that asked for ``language``: JSON (bare, fenced or
    embedded in prose) with ``summary_en`` and ``summary_nen`` {language, summary}, or the word None."""
    if text is None or not text.strip():
        return Answer("invalid_json", "empty answer")
    stripped = text.strip()
    bare = _FENCE.sub(lambda m: m.group(1), stripped).strip().strip("`'\".").strip()
    if bare.casefold() in _NONE_WORDS:
        return Answer("none", "too little information (the model answered None)")
    data: Any = None
    for cand in _json_candidates(stripped):
        if not isinstance(cand, str):
            data = cand
            break
        try:
            data = json.loads(cand)
            break
        except ValueError:
            continue
    else:
        return Answer("invalid_json", "the answer is not JSON")
    if data is None:
        return Answer("none", "too little information (the model answered null)")
    if not isinstance(data, dict):
        return Answer("bad_shape", f"expected a JSON object, got {type(data).__name__}")
    en, nen = data.get("summary_en"), data.get("summary_nen")
    if not isinstance(en, str) or not en.strip():
        return Answer("bad_shape", "missing or empty 'summary_en'")
    if not isinstance(nen, dict) or not isinstance(nen.get("summary"), str) or not nen["summary"].strip():
        return Answer("bad_shape", "missing or empty 'summary_nen.summary'")
    got = nen.get("language")
    if not isinstance(got, str) or got.strip().casefold() != language.casefold():
        return Answer("wrong_language", f"asked for {language}, got {got!r}")
    return Answer(
        "ok",
        summaries={
            "summary_en": en.strip(),
            "summary_nen": {"language": language, "summary": nen["summary"].strip()},
        },
    )
