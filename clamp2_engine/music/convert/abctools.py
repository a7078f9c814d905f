"""abctoolkit, in process: xml2abc (``-d 8 -x``), abc2xml, and the reference's interleaving steps.

Both converters keep module-level state (xml2abc's ``abcOut``, abc2xml's ``mxm``), so these functions
are not thread-safe; the batch runner uses processes. Their chatter on stdout/stderr is captured.
"""

from __future__ import annotations

import contextlib
import io
import re
import types
import warnings
from typing import BinaryIO
from xml.etree import ElementTree

from .common import ConversionError

INFO_FIELDS = ["X:", "T:", "C:", "W:", "w:", "Z:", "%%MIDI"]
_TUNE_SPLIT = re.compile(r"^\s*X:", re.M)
_INCLUDE = re.compile(r"^[ \t]*(%%|I:)abc-include.*$", re.M)


def _xml2abc_options() -> types.SimpleNamespace:
    """The option values of ``xml2abc.py -d 8 -x`` exactly as its command line parser sets them."""
    return types.SimpleNamespace(
        u=None,
        m=0,
        c=0,
        d=8,
        n=0,
        b=0,
        o="",
        v=0,
        x=True,
        p=[],
        j=None,
        t=None,
        s=None,
        v1=None,
        ped=True,
        stm=False,
        i=None,
    )


@contextlib.contextmanager
def _quiet(log: io.StringIO):
    """Capture the converters' stdout/stderr chatter in ``log`` and silence library warnings."""
    with contextlib.redirect_stderr(log), contextlib.redirect_stdout(log), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _last_line(text: str) -> str:
    lines = [line.strip(" -*") for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def xml2abc(source: bytes | BinaryIO, name: str = "score") -> str:
    """Standard ABC from MusicXML bytes or a binary file object: what ``xml2abc.py -d 8 -x FILE`` prints
    on stdout (the reference read that output), without starting a process."""
    from abctoolkit import xml2abc as x2a

    fobj = io.BytesIO(source) if isinstance(source, bytes) else source
    options = _xml2abc_options()
    out = x2a.ABCoutput(name + ".abc", "", 0, options)
    out.outfile = io.StringIO()
    x2a.abcOut = out  # the parser writes through this module global
    log = io.StringIO()
    try:
        with _quiet(log):
            x2a.Parser(options).parse(fobj)
    except ElementTree.ParseError as exc:
        raise ConversionError("xml", f"malformed XML: {exc}", final=True) from exc
    except Exception as exc:
        raise ConversionError("xml2abc", f"{type(exc).__name__}: {exc}") from exc
    text = out.outfile.getvalue()
    if not text:
        raise ConversionError("xml2abc", f"no output ({_last_line(log.getvalue()) or 'no notes'})")
    return text + "\n"  # stdout mode adds an empty line after each tune


def interleave(standard_abc: str) -> str:
    """Interleaved ABC from standard ABC, step for step as the reference's ``batch_interleaved_abc.py``."""
    from abctoolkit.rotate import rotate_abc
    from abctoolkit.utils import (
        Barlines,
        Quote_re,
        remove_bar_no_annotations,
        remove_information_field,
        strip_empty_bars,
    )

    abc_lines = io.StringIO(standard_abc, newline=None).readlines()  # as f.readlines() on the file
    abc_lines = [line for line in abc_lines if line.strip() != ""]
    abc_lines = remove_information_field(abc_lines=abc_lines, info_fields=INFO_FIELDS)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            abc_lines = remove_bar_no_annotations(abc_lines)
            for i, line in enumerate(abc_lines):
                if not (re.search(r"^[A-Za-z]:", line) or line.startswith("%")):
                    abc_lines[i] = line.replace(r"\"", "")
                    for quote_content in re.findall(Quote_re, line):
                        for barline in Barlines:
                            if barline in quote_content:
                                line = line.replace(quote_content, "")
                                abc_lines[i] = line
            stripped, _ = strip_empty_bars(abc_lines)
            if stripped is None:
                raise ConversionError("interleave", _last_line(log.getvalue()).rstrip(".") or "strip failed")
            rotated = rotate_abc(stripped)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError("interleave", f"{type(exc).__name__}: {exc}".rstrip(".")) from exc
    if rotated is None:
        raise ConversionError("interleave", "rotation failed")
    return "".join(rotated)


def split_tunes(text: str) -> list[tuple[str, str]]:
    """Split an ABC tune book into ``(name suffix, tune text)``; the text before the first ``X:`` (file
    header) is kept in front of every tune, as abc2xml does. One tune gets the suffix ``""``; several
    get ``_<X number>`` when those are unique and plain, else ``_<position>``."""
    text = _INCLUDE.sub("", text)  # never read other files named by the input
    fragments = _TUNE_SPLIT.split(text)
    preamble, bodies = fragments[0], fragments[1:]
    if not bodies:
        return [("", text)] if text.strip() else []
    tunes = [preamble + "X:" + body for body in bodies]
    if len(tunes) == 1:
        return [("", tunes[0])]
    numbers = [body.split("\n", 1)[0].strip() for body in bodies]
    plain = all(re.fullmatch(r"[0-9A-Za-z]+", n) for n in numbers) and len(set(numbers)) == len(numbers)
    width = len(str(len(tunes)))
    suffixes = [f"_{n}" for n in numbers] if plain else [f"_{i:0{width}d}" for i in range(1, len(tunes) + 1)]
    return list(zip(suffixes, tunes, strict=True))


def abc2xml(abc_text: str) -> list[str]:
    """MusicXML documents (strings) for the tunes of an ABC text, via abctoolkit's abc2xml."""
    with warnings.catch_warnings():  # its grammar, built on import, uses deprecated pyparsing names
        warnings.simplefilter("ignore")
        from abctoolkit import abc2xml as a2x

    abc_text = _INCLUDE.sub("", abc_text)
    log = io.StringIO()
    try:
        with _quiet(log):
            docs = a2x.getXmlDocs(abc_text, 0, 1 << 30)
            xmls = [a2x.fixDoctype(doc) for doc in docs]
    except Exception as exc:
        raise ConversionError("abc2xml", f"{type(exc).__name__}: {exc}") from exc
    if not xmls:
        reason = _abc2xml_reason(log.getvalue())
        raise ConversionError("abc2xml", reason)
    return [x + "\n" for x in xmls]


def _abc2xml_reason(log: str) -> str:
    """The useful part of abc2xml's error output (a pyparsing message or an exception)."""
    lines = [line.strip(" -*") for line in log.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("skipped header", "decoded from"))]
    for line in lines:
        if "exception" in line.lower() or "error" in line.lower() or "expected" in line.lower():
            return line[:200]
    return lines[-1][:200] if lines else "no tune could be parsed"
