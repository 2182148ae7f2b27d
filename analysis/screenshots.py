"""Screenshots of the MLflow UI as a researcher sees it (`make screenshots`).

Starts `mlflow server` on 127.0.0.1 over a store (default: the demo's results/mlflow.db), opens
the experiment's runs in headless Chromium (the system's package: `apt-get install chromium`)
through the DevTools protocol, saves the runs table and the eval/ charts as PNG files, and stops
the server. The page is the one `harness run` links to: the harness's saved view of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from harness.infra.locations import DEFAULT_TRACKING_URI, free_port, runs_page_url, sqlite_path
from harness.infra.stores import use_tracking

WIDTH, HEIGHT = 1920, 1000
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Browser settings a first visit would otherwise get: MLflow's assistant panel opens itself once.
LOCAL_STORAGE = {
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
}


class ScreenshotError(RuntimeError):
    """No browser, no server, or a page that never showed what it should."""


def find_browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    raise ScreenshotError(
        "no Chromium found: install the system package (apt-get install chromium)"
    )


class MlflowServer:
    """`mlflow server` on 127.0.0.1 over `store`, in its own process group (stopped as a whole)."""

    def __init__(self, store: str, timeout: float = 120):
        self.store, self.timeout, self.port = store, timeout, free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MlflowServer:
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        cmd = [
            str(mlflow_bin) if mlflow_bin.exists() else "mlflow",
            "server",
            "--backend-store-uri",
            self.store,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise ScreenshotError(f"mlflow server exited: {self.log.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise ScreenshotError(f"mlflow server not ready after {self.timeout:.0f} s")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server's workers are in its group
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Browser:
    """Headless Chromium driven over the DevTools protocol (a websocket, no driver binary)."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT):
        self.width, self.height = width, height

    async def __aenter__(self) -> Browser:
        self.profile = tempfile.TemporaryDirectory(prefix="harness-chromium-")
        self.proc = subprocess.Popen(
            [
                find_browser(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile.name}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        else:
            raise ScreenshotError("Chromium did not open its DevTools port")
        port = port_file.read_text().split()[0]
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self.ids = itertools.count(1)
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        await self.http.close()
        self.proc.terminate()
        self.proc.wait(20)
        self.profile.cleanup()

    async def send(self, method: str, **params):
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:  # events arrive in between; the answer carries the call's id
            message = await self.ws.receive_json()
            if message.get("id") == call_id:
                if "error" in message:
                    raise ScreenshotError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 90) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if await self.evaluate(expression):
                return
            await asyncio.sleep(0.5)
        raise ScreenshotError(f"the page never showed {what} in {timeout:.0f} s")

    async def open(self, url: str, ready: str, what: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(ready, what)
        # park the mouse on the sidebar: a pointer over a chart shows plotly's toolbar
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=5, y=self.height - 5)
        await asyncio.sleep(5)  # let the table and charts finish laying out

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


# The table's rows and the saved view's metric columns are drawn ("0 matching runs" shows first).
RUNS_LOADED = (
    "document.querySelectorAll('.ag-center-cols-container .ag-row').length > 0"
    " && document.body.innerText.includes('eval/kl')"
)
CHARTS_DRAWN = "document.querySelectorAll('.js-plotly-plot').length > 0"


async def take(server_url: str, experiment_id: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    async with Browser() as browser:
        # before any of the page's own scripts, on every page: the settings a first visit lacks
        settings = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in LOCAL_STORAGE.items())
        await browser.send("Page.enable")
        await browser.send("Page.addScriptToEvaluateOnNewDocument", source=settings)
        # ... and again once the first page has drawn: the app may have opened its panel by then
        await browser.open(
            server_url + "/", "document.body.innerText.includes('Experiments')", "MLflow"
        )
        await browser.evaluate(settings)
        table = runs_page_url(server_url, experiment_id)
        await browser.open(table, RUNS_LOADED, "the runs table")
        shots.append(out / "runs_table.png")
        await browser.screenshot(shots[-1])
        await browser.open(table + "&compareRunsMode=CHART", CHARTS_DRAWN, "the eval/ charts")
        shots.append(out / "eval_charts.png")
        await browser.screenshot(shots[-1])
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.screenshots", description=__doc__)
    parser.add_argument(
        "--store",
        default=DEFAULT_TRACKING_URI,
        help="SQLite MLflow store (default: %(default)s, made by `make demo`)",
    )
    parser.add_argument("--experiment", default="quickstart", help="MLflow experiment name")
    parser.add_argument("--out", type=Path, default=Path("results/screenshots"))
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient  # deferred: mlflow takes seconds to import

    db = sqlite_path(args.store)
    if db is None or not db.exists():
        print(
            f"screenshots: {args.store} is not an existing SQLite store: run `make demo`",
            file=sys.stderr,
        )
        return 2
    found = MlflowClient(args.store).get_experiment_by_name(args.experiment)
    if found is None:
        print(
            f"screenshots: no experiment {args.experiment!r} in {args.store}: run `make demo` "
            "first",
            file=sys.stderr,
        )
        return 2
    use_tracking(args.store, args.experiment)  # stores made before the harness's view get it
    try:
        with MlflowServer(args.store) as server:
            shots = asyncio.run(take(server.url, found.experiment_id, args.out))
    except ScreenshotError as err:
        print(f"screenshots: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(s) for s in shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
