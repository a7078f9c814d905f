"""The search page in a real browser (Playwright driving the system's Chromium, real HTTP): every card
plays its piece, the position advances and the engraved score follows the music."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from helpers import Server, ingest_serve_corpus

from clamp2_engine.serve.app import create_app
from clamp2_engine.serve.audio import unavailable
from clamp2_engine.serve.service import ServeConfig
from clamp2_engine.store import StoreSpec

QUERY = "a chorale for four voices"


def need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs what the page test needs: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def site(tmp_path_factory, parity_dir):
    need(shutil.which("chromium") is not None, "no chromium on this machine")
    need(not unavailable(), f"no audio: {unavailable()}")
    sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else None
    if sync_api is None:
        from playwright import sync_api
    root = tmp_path_factory.mktemp("page")
    store = ingest_serve_corpus(root, parity_dir)
    server = Server(create_app(ServeConfig(StoreSpec(path=store), "music", cache_dir=root / "cache")))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        yield server.url, browser
        browser.close()
    server.stop()


def test_every_card_has_a_player_whose_source_is_audio(site):
    url, browser = site
    page = browser.new_page()
    page.goto(f"{url}/?" + str(httpx.QueryParams({"q": QUERY})))
    page.wait_for_selector(".card .play", timeout=60_000)
    cards = page.locator(".card")
    assert cards.count() >= 5
    assert page.locator(".card .play").count() == cards.count()
    pid = cards.first.get_attribute("data-id")
    res = httpx.get(f"{url}/pieces/{pid}/audio", timeout=60)
    assert res.status_code == 200
    assert res.headers["content-type"] == "audio/mpeg"
    part = httpx.get(f"{url}/pieces/{pid}/audio", headers={"Range": "bytes=100-199"}, timeout=60)
    assert part.status_code == 206  # a player can seek
    assert part.content == res.content[100:200]
    assert httpx.get(f"{url}/healthz").json()["audio"] == "ok"
    page.close()


def test_playing_advances_and_the_score_follows(site):
    url, browser = site
    page = browser.new_page()
    page.goto(f"{url}/?" + str(httpx.QueryParams({"q": QUERY, "modality": "abc"})))
    page.wait_for_selector(".card .score svg g.measure", timeout=60_000)
    engraved = page.locator(".card", has=page.locator(".score svg g.measure")).first
    # that card, by its id: "the first engraved card" changes as the other cards' scores arrive
    card = page.locator(f'.card[data-id="{engraved.get_attribute("data-id")}"]')
    card.locator(".play").click()
    page.wait_for_function(
        "(el) => { const a = el.querySelector('audio'); return a && a.currentTime > 1.0; }",
        arg=card.element_handle(),
        timeout=60_000,
    )
    assert card.locator(".position").inner_text().startswith("0:0")
    page.wait_for_function(  # the measure being played, once the player's next time update lands
        "(el) => el.querySelectorAll('.score svg g.measure.playing').length === 1",
        arg=card.element_handle(),
        timeout=20_000,
    )
    page.wait_for_function(  # and, as it goes on, the notes sounding
        "(el) => el.querySelector('.score svg .note.playing') !== null",
        arg=card.element_handle(),
        timeout=20_000,
    )
    other = page.locator(".card").nth(1)
    if other.get_attribute("data-id") != card.get_attribute("data-id"):
        other.locator(".play").click()  # one piece sounds at a time
        page.wait_for_function(
            "(el) => el.querySelector('audio').paused", arg=card.element_handle(), timeout=60_000
        )
    page.close()


def test_without_a_soundfont_the_page_says_why(site, monkeypatch, tmp_path):
    url, _browser = site
    monkeypatch.setenv("CLAMP2_SOUNDFONT", str(tmp_path / "none.sf2"))
    assert httpx.get(f"{url}/healthz").json()["audio"].startswith("no SoundFont at $CLAMP2_SOUNDFONT")
    res = httpx.get(f"{url}/pieces/00000000-0000-0000-0000-000000000000/audio")
    assert res.status_code == 501
    assert res.json()["error"].startswith("no SoundFont")


def test_the_piece_view(site):
    """/?piece=ID opens the piece: every page of its score, its metadata, a player that follows the music
    across pages, downloads and a link that reopens it; a card's title opens it too, and Close returns."""
    url, browser = site
    hits = httpx.post(f"{url}/search", json={"query": "mozart quartet", "k": 12}).json()["hits"]
    mozart = next(h for h in hits if h["source"].endswith("mozart_k155_movement1.mxl"))
    page = browser.new_page()
    page.goto(f"{url}/?piece={mozart['id']}")
    page.wait_for_selector("#piece .page svg", timeout=60_000)
    view = page.locator("#piece")
    assert view.locator("h2").inner_text() == mozart["title"]
    assert view.locator(".page").count() >= 2  # every page, not the first alone
    facts = view.locator("dl").inner_text()
    assert "meter" in facts
    assert "4/4" in facts
    assert "key_sharps" not in facts  # fields for machines stay out
    assert "title" not in facts.split()  # the heading says it
    assert view.locator(".permalink").get_attribute("href") == f"/?piece={mozart['id']}"
    assert view.locator("button", has_text="MIDI").count() == 1
    assert view.locator("button", has_text="Audio").count() == 1
    view.locator(".play").click()
    page.wait_for_function(
        "() => document.querySelector('#piece .page svg .measure.playing') !== null", timeout=60_000
    )
    view.locator(".play").click()
    view.locator("button.close").click()
    page.wait_for_function("() => document.getElementById('piece').hidden")
    assert "piece=" not in page.url
    page.goto(f"{url}/?like={mozart['id']}")  # a link to "more like this": the status names the piece
    page.wait_for_function(
        "() => /pieces for pieces like/.test(document.getElementById('status').textContent)"
    )
    assert mozart["title"] in page.locator("#status").inner_text()
    page.goto(f"{url}/?" + str(httpx.QueryParams({"q": QUERY})))
    page.wait_for_selector(".card h2 a", timeout=60_000)
    first = page.locator(".card").first
    first.locator("h2 a").click()
    page.wait_for_selector("#piece h2", timeout=60_000)
    assert f"piece={first.get_attribute('data-id')}" in page.url
    assert page.locator(".card").count() >= 5  # the results stay under the piece
    page.close()


def test_a_phone_screen_and_the_keyboard(site):
    """At phone width nothing overflows sideways; the search and a player work from the keyboard alone."""
    url, browser = site
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(url)
    page.locator("#q").fill(QUERY)
    page.keyboard.press("Enter")
    page.wait_for_selector(".card .play", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.locator(".card .play").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const a = document.querySelector('.card audio'); return a && a.currentTime > 0.5; }",
        timeout=60_000,
    )
    assert "q=" in page.url  # the search went into the address
    page.close()
