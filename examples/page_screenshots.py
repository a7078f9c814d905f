"""The README's screenshots of the search page: the demo collection served on 127.0.0.1, a search in
headless Chromium (Playwright with the system's browser), a piece playing with its score following, and
that piece's view.

    python examples/page_screenshots.py [--out docs/img]

Needs the [serve] and [audio] extras, Playwright and Chromium; builds the demo collection in a temporary
data folder first (about a minute and a half on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERY = "ein Choral für vier Stimmen"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img")
    args = ap.parse_args()
    import httpx
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "CLAMP2_HOME": home, "HF_HUB_OFFLINE": "1"}
        demo = [sys.executable, "-m", "clamp2_engine", "demo", "-q", "--query", "x"]
        subprocess.run(demo, env=env, check=True, capture_output=True)
        port = 8765
        serve = [sys.executable, "-m", "clamp2_engine", "serve", "-c", "demo", "--port", str(port)]
        server = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:  # until the server is ready; a server that stopped, or never got ready, is an error
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"`{' '.join(serve[2:])}` did not become ready")
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=shutil.which("chromium"),
                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
                )
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{url}/?" + str(httpx.QueryParams({"q": QUERY})))
                page.wait_for_selector(".card .score svg g.measure", timeout=120_000)
                card = page.locator(".card", has=page.locator(".score svg g.measure")).first
                card.locator(".play").click()
                page.wait_for_function(
                    "(el) => el.querySelector('audio').currentTime > 4",
                    arg=card.element_handle(),
                    timeout=60_000,
                )
                card.locator(".play").click()  # pause, so that the picture holds the highlight
                args.out.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out / "page-playing.png"))
                card.locator("h2 a").click()  # the piece view: every page, metadata, player, link
                page.wait_for_selector("#piece .page svg", timeout=120_000)
                view = page.locator("#piece")
                view.locator(".play").click()
                page.wait_for_function(
                    "() => document.querySelector('#piece audio').currentTime > 6", timeout=60_000
                )
                view.locator(".play").click()
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(args.out / "piece-view.png"))
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    print(args.out / "page-playing.png", args.out / "piece-view.png")


if __name__ == "__main__":
    main()
