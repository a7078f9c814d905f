"""What the page shows of a piece: the first page engraved by Verovio (SVG), a piano roll for MIDI-only
pieces, and a MIDI file to play.

Everything here runs in a worker process with a time limit (``clamp2_engine.workers``) and its result is
cached on disk, so no score, however broken, can take the server down or be engraved twice. Verovio's
ABC reader crashes on interleaved ABC, so ABC is engraved from the MusicXML that ingest's own ABC ->
MusicXML conversion makes; MusicXML and Humdrum sources go to Verovio as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from html import escape
from pathlib import Path
from typing import Any

from clamp2_engine.paths import atomic_write_bytes
from clamp2_engine.types import HUMDRUM_SUFFIXES, MEI_SUFFIXES, MIDI_SUFFIXES, MTF_SUFFIXES
from clamp2_engine.types import MUSICXML_SUFFIXES as XML_SUFFIXES

RENDER_TIMEOUT_S = 30.0
RENDER_VERSION = 3  # in the cache keys: bumped when a rendering of the same file changes (seeded ids)
SCORE_WIDTH = 1800  # Verovio page width (tenths of a staff space): a wide card, few systems
PIANO_ROLL_SECONDS = 30.0  # the piano roll shows the first half minute


class RenderError(ValueError):
    """A piece that cannot be drawn or played; one line for the client."""


def _pick(items: list[tuple[str, Any]], part: str) -> Any:
    """The piece ``part`` (``"3"`` = tune X:3, score 3) of a file's pieces, or its first."""
    for name, value in items:
        if part and name.lstrip("_") == part.lstrip("_"):
            return value
    if part and len(items) > 1:
        raise RenderError(f"no piece {part} in the file")
    return items[0][1]


def _musicxml(path: Path, part: str) -> str:
    """MusicXML for a score: the file itself, or made by ingest's ABC -> MusicXML conversion."""
    from clamp2_engine.music.convert.abctools import abc2xml, split_tunes
    from clamp2_engine.music.convert.common import read_input
    from clamp2_engine.music.convert.score import clean_part_names, read_musicxml

    suffix = path.suffix.lower()
    if suffix in XML_SUFFIXES:
        xml, _notes = read_musicxml(read_input(path))
        return xml.decode("utf-8", errors="replace")
    if suffix == ".abc":
        text = read_input(path).decode("utf-8", errors="replace")
        tunes = split_tunes(text) or [("", text)]
        xmls = abc2xml(_pick(tunes, part))
        if not xmls:
            raise RenderError("the ABC could not be converted to MusicXML")
        return clean_part_names(xmls[0])
    from clamp2_engine.music.convert import score_to_interleaved_abc

    abc = _pick(score_to_interleaved_abc(path), part)
    xmls = abc2xml(abc)
    if not xmls:
        raise RenderError("the score could not be converted to MusicXML")
    return clean_part_names(xmls[0])


def toolkit(task: tuple[str, str]):
    """A Verovio toolkit with the score loaded (worker side); ids are seeded, so that every load of a
    score names its notes alike (the SVG's and the timemap's)."""
    import verovio

    path, part = Path(task[0]), task[1]
    tk = verovio.toolkit()
    tk.setOptions(
        {
            "pageWidth": SCORE_WIDTH,
            "adjustPageHeight": True,
            "scale": 35,
            "footer": "none",
            "header": "none",
            "xmlIdSeed": 1,
        }
    )
    if path.suffix.lower() in HUMDRUM_SUFFIXES | MEI_SUFFIXES:  # Verovio reads them itself
        data = path.read_text(encoding="utf-8", errors="replace")
    else:
        data = _musicxml(path, part)
    if not tk.loadData(data) or tk.getPageCount() < 1:
        raise RenderError("Verovio could not read the score")
    return tk


def engrave(task: tuple[str, str]) -> str:
    """The first page of a score as SVG (worker side)."""
    return toolkit(task).renderToSVG(1)


MAX_PAGES = 40  # a piece view shows at most this many pages


def engrave_all(task: tuple[str, str]) -> bytes:
    """Every page of a score (up to :data:`MAX_PAGES`) as JSON ``{"pages": [svg, ...], "total": n}``
    (worker side)."""
    import json

    tk = toolkit(task)
    total = tk.getPageCount()
    pages = [tk.renderToSVG(n) for n in range(1, min(total, MAX_PAGES) + 1)]
    return json.dumps({"pages": pages, "total": total}).encode()


def _midi_file(path: Path, part: str):
    import mido

    from clamp2_engine.music.convert import mtf_to_midi, score_to_midis

    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return mido.MidiFile(path)
    if suffix in MTF_SUFFIXES:
        return mtf_to_midi(path.read_text(encoding="utf-8", errors="replace"))
    midis = score_to_midis(path)
    return _pick(midis, part)


def midi_bytes(task: tuple[str, str]) -> bytes:
    """The piece as a standard MIDI file (worker side)."""
    mid = _midi_file(Path(task[0]), task[1])
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def piano_roll(task: tuple[str, str]) -> str:
    """A piano roll of the first :data:`PIANO_ROLL_SECONDS` seconds as SVG (worker side)."""
    mid = _midi_file(Path(task[0]), task[1])
    notes, now, started = [], 0.0, {}
    for msg in mid:  # merged tracks, times in seconds
        now += msg.time
        if now > PIANO_ROLL_SECONDS:
            break
        if msg.type == "note_on" and msg.velocity > 0:
            started[(msg.channel, msg.note)] = now
        elif msg.type in ("note_off", "note_on"):
            begin = started.pop((msg.channel, msg.note), None)
            if begin is not None:
                notes.append((begin, now, msg.note, msg.channel))
    if not notes:
        raise RenderError("no notes in the first half minute")
    low, high = min(n[2] for n in notes), max(n[2] for n in notes)
    end = max(n[1] for n in notes)
    width, height = 900, 12 * (high - low + 3)
    scale_x = width / max(end, 1e-3)
    rects = "".join(
        f'<rect x="{b * scale_x:.1f}" y="{(high - note + 1) * 12}" width="{max(2.0, (e - b) * scale_x):.1f}" '
        f'height="10" rx="2" fill="hsl({(ch * 47) % 360},60%,45%)"/>'
        for b, e, note, ch in notes
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="piano-roll" '
        f'role="img" aria-label="{escape("piano roll")}">{rects}</svg>'
    )


def sound(task: tuple[str, str]) -> bytes:
    """The piece as MP3 (worker side): its MIDI, as ``/midi`` serves it, through the SoundFont."""
    from clamp2_engine.serve.audio import synthesize

    return synthesize(midi_bytes(task))


def timemap(task: tuple[str, str]) -> bytes:
    """Verovio's timemap of the engraved score (worker side): ``[{"ms", "on", "off"}]`` with the ids of
    the notes (and the measure) that start and stop sounding then: the ids of ``score.svg`` and of every
    page of ``pages.json`` (the toolkit's ids are seeded)."""
    import json

    events = toolkit(task).renderToTimemap({"includeMeasures": True})
    if isinstance(events, str):
        events = json.loads(events)
    out = []
    for e in events:
        on = list(e.get("on", [])) + ([e["measureOn"]] if e.get("measureOn") else [])
        off = list(e.get("off", []))
        if on or off:
            out.append({"ms": round(float(e.get("tstamp", 0))), "on": on, "off": off})
    return json.dumps(out).encode()


def run_in_worker(fn, task: tuple[str, str], timeout: float = RENDER_TIMEOUT_S):
    """``fn(task)`` in a worker process with a time limit; :class:`RenderError` with the reason."""
    from clamp2_engine.music.convert.batch import PRELOAD, quiet_worker
    from clamp2_engine.workers import run_tasks

    [outcome] = run_tasks(fn, [task], jobs=1, timeout=timeout, initializer=quiet_worker, preload=PRELOAD)
    if not outcome.ok:
        from clamp2_engine.music.convert.batch import memory_note
        from clamp2_engine.workers import without_internals

        raise RenderError(without_internals(memory_note(outcome.error)))
    return outcome.result


GIVEN_UP_FOR_S = 300.0  # a rendering killed at its limit is not tried again for this long


class Renderer:
    """Score SVG, piano roll and MIDI for a piece's source file, each made once and cached on disk.
    Concurrent requests for the same rendering share one worker; a failure is cached on disk, and one
    killed at its time or memory limit (perhaps the machine's load) is remembered for
    :data:`GIVEN_UP_FOR_S` seconds."""

    def __init__(
        self, cache: Path, timeout: float = RENDER_TIMEOUT_S, observe: Callable[[str], None] | None = None
    ):
        self.cache, self.timeout = cache, timeout
        self.observe = observe or (lambda _result: None)  # hit | made | failed | given_up
        self.lock = threading.Lock()
        self.making: dict[Path, Future] = {}  # renderings under way: later askers wait for the first
        self.given_up: dict[Path, tuple[float, str]] = {}

    def _cached(self, kind: str, path: Path, part: str, make) -> bytes:
        return self._cache_file(kind, path, part, make).read_bytes()

    def _cache_file(self, kind: str, path: Path, part: str, make) -> Path:
        """The cached rendering of ``kind``, made by ``make()`` the first time (once, however many ask
        at the same time)."""
        stat = path.stat()
        blob = f"{RENDER_VERSION}|{kind}|{path}|{part}|{stat.st_size}|{stat.st_mtime_ns}"
        target = self.cache / f"{hashlib.sha256(blob.encode()).hexdigest()[:32]}.{kind}"
        failed = target.with_suffix(f".{kind}.failed")
        if target.is_file():
            self.observe("hit")
            return target
        if failed.is_file():  # a piece that failed once fails fast afterwards
            self.observe("hit")
            raise RenderError(failed.read_text(encoding="utf-8"))
        with self.lock:
            when, why = self.given_up.get(target, (0.0, ""))
            if time.monotonic() - when < GIVEN_UP_FOR_S:
                self.observe("hit")
                raise RenderError(f"{why} (tried {time.monotonic() - when:.0f} s ago; try again later)")
            first = target not in self.making
            if first:
                self.making[target] = Future()
            future = self.making[target]
        if not first:
            future.result()  # the first asker's outcome: its error, or the file it made
            return target
        try:
            self._make(target, failed, make)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(target)
        finally:
            with self.lock:
                self.making.pop(target, None)
        return target

    def _make(self, target: Path, failed: Path, make) -> None:
        self.cache.mkdir(parents=True, exist_ok=True)
        try:
            data = make()
        except RenderError as exc:
            given_up = "timed out" in str(exc) or "worker died" in str(exc) or "memory" in str(exc)
            self.observe("given_up" if given_up else "failed")
            if given_up:  # perhaps the machine's load: remembered for a while, not for good
                with self.lock:
                    self.given_up[target] = (time.monotonic(), str(exc))
            else:
                atomic_write_bytes(failed, str(exc).encode())
            raise
        self.observe("made")
        atomic_write_bytes(target, data)

    def svg(self, path: Path, part: str = "") -> bytes:
        """The engraved first page; a piano roll for MIDI and MTF sources."""
        suffix = path.suffix.lower()
        fn = piano_roll if suffix in MIDI_SUFFIXES | MTF_SUFFIXES else engrave
        return self._cached(
            "svg", path, part, lambda: run_in_worker(fn, (os.fspath(path), part), self.timeout).encode()
        )

    def audio(self, path: Path, part: str = "") -> Path:
        """The piece as MP3 (a file, so that it can be served with ranges)."""
        return self._cache_file(
            "mp3", path, part, lambda: run_in_worker(sound, (os.fspath(path), part), self.timeout)
        )

    def pages(self, path: Path, part: str = "") -> bytes:
        """Every engraved page (JSON); the piano roll as the one page of a MIDI or MTF source."""
        if path.suffix.lower() in MIDI_SUFFIXES | MTF_SUFFIXES:
            import json

            return json.dumps({"pages": [self.svg(path, part).decode()], "total": 1}).encode()
        return self._cached(
            "pages", path, part, lambda: run_in_worker(engrave_all, (os.fspath(path), part), self.timeout)
        )

    def timemap(self, path: Path, part: str = "") -> bytes:
        """When each note of the engraved score sounds (JSON); ``[]`` for MIDI and MTF sources."""
        if path.suffix.lower() in MIDI_SUFFIXES | MTF_SUFFIXES:
            return b"[]"
        return self._cached(
            "timemap", path, part, lambda: run_in_worker(timemap, (os.fspath(path), part), self.timeout)
        )

    def midi(self, path: Path, part: str = "") -> bytes:
        return self._cached(
            "mid", path, part, lambda: run_in_worker(midi_bytes, (os.fspath(path), part), self.timeout)
        )
