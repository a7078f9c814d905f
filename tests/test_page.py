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
    card = page.locator(".card", has=page.locator(".score svg g.measure")).first
    card.locator(".play").click()
    page.wait_for_function(
        "(el) => { const a = el.querySelector('audio'); return a && a.currentTime > 1.0; }",
        arg=card.element_handle(),
        timeout=60_000,
    )
    assert card.locator(".position").inner_text().startswith("0:0")
    assert card.locator(".score svg g.measure.playing").count() == 1  # the measure being played
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
