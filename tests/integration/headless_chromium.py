"""Debian's Chromium driven headless over the DevTools protocol (CDP), for tests of the web dashboard.

Raw CDP over a websocket rather than Selenium: nothing to download at run time (no driver manager), real
mouse events through Chromium's input pipeline, and the network log of every request the page made, so a
test can assert that the page loads nothing from anywhere but the API.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--window-size=1400,1100")


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CdpError(RuntimeError):
    pass


class HeadlessChromium:
    """One headless browser with one page. Use as a context manager."""

    def __init__(self, binary: str, timeout_s: float = 30.0) -> None:
        self._binary = binary
        self._timeout = timeout_s
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # every CDP event received, in order
        self._profile = Path(tempfile.mkdtemp(prefix="lakehouse-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._connections = contextlib.ExitStack()

    def __enter__(self) -> HeadlessChromium:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> HeadlessChromium:
        self._process = subprocess.Popen(
            [self._binary, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self._timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise CdpError(f"chromium did not start (exit code {self._process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        self._ws = self._connections.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None,
                                                           open_timeout=10))
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        return self

    def __exit__(self, *exc: object) -> None:
        self._connections.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._ws is not None
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + self._timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]}…: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def wait_until(self, expression: str, timeout_s: float = 30.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what or expression}")

    def click(self, x: float, y: float) -> None:
        """A real left click at page coordinates (CSS pixels)."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path) -> Path:
        import base64

        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))
        return path

    def requested_urls(self) -> list[str]:
        self.evaluate("1")  # drain the events that arrived meanwhile
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]


AXE = Path(__file__).resolve().parents[2] / "build" / "vendor" / "axe-core" / "axe.min.js"  # `make setup` fetches it


def serious_accessibility_violations(browser: HeadlessChromium) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (axe injected into the page from
    the local copy, so the page's own requests stay on the API's origin)."""
    if not AXE.exists():
        raise AssertionError(f"axe-core is missing at {AXE}: run `make {AXE.relative_to(AXE.parents[3])}` "
                             "(or `make setup`)")
    browser.evaluate(AXE.read_text() + "; true")
    return browser.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then((r) => r.violations"
        ".filter((v) => v.impact === 'serious' || v.impact === 'critical')"
        ".map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target)})))")
