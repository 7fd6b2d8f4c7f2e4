"""A real control plane (a subprocess, with its REST port and the console),
one simulated agent streaming to it, and headless Chromium driven through
Selenium with Debian's chromium-driver (scripts/test installs both)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.controlplane_fixtures import TINY_FEDERATION
from tests.controlplane_process import ControlPlaneProcess, free_port

WAIT_SECONDS = 15.0
T = TypeVar("T")


@dataclass
class Console:
    """The control plane under test, seen as a browser user and as an API client."""

    server: ControlPlaneProcess
    browser: webdriver.Chrome
    screenshots: Path

    @property
    def url(self) -> str:
        return f"{self.server.rest_url}/console/"

    def api(self, method: str, path: str, body: Any = None, token: str = "") -> Any:
        request = urllib.request.Request(
            self.server.rest_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {token or self.server.admin_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def token(self, tenant: str, *scopes: str) -> str:
        body: dict[str, Any] = {"parent": f"tenants/{tenant}", "token": {"scopes": list(scopes)}}
        secret: str = self.api("POST", "/api/v1/auth/tokens", body)["secret"]
        return secret

    def open(self, token: str, view: str = "intents") -> None:
        """A fresh tab's first visit: signs in with `token` and goes to `view`."""
        self.browser.get("about:blank")
        self.browser.get(self.url)
        self.browser.execute_script("sessionStorage.clear()")
        self.browser.get(self.url)
        field = self.wait(lambda: self.browser.find_element(By.NAME, "token"))
        field.send_keys(token)
        self.browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        self.wait(lambda: self.browser.find_element(By.ID, "sign-out"))
        self.go(view)

    def go(self, view: str) -> None:
        self.browser.execute_script("location.hash = arguments[0]", f"#/{view}")

    def wait(self, condition: Callable[[], T | None], seconds: float = WAIT_SECONDS) -> T:
        """What `condition` returns once it is truthy; elements re-rendered meanwhile
        and not-yet-present ones count as not yet."""

        def attempt(_driver: Any) -> T | None:
            try:
                return condition()
            except (StaleElementReferenceException, NoSuchElementException, LookupError):
                return None

        try:
            result = WebDriverWait(self.browser, seconds, poll_frequency=0.1).until(attempt)
        except TimeoutException:
            raise AssertionError(
                f"not within {seconds:.0f}s; the page at {self.browser.current_url} shows:\n"
                f"{self.browser.find_element(By.TAG_NAME, 'body').text}\n"
                f"browser log: {self.browser_log()}"
            ) from None
        assert result is not None  # until() returns only a truthy value
        return result

    def text(self, css: str) -> str:
        return str(self.browser.find_element(By.CSS_SELECTOR, css).text)

    def rows(self, table_id: str) -> list[WebElement]:
        return list(self.browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr"))

    def shot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        self.browser.save_screenshot(str(path))
        return path

    def browser_log(self) -> list[dict[str, Any]]:
        """What the page logged since the last call (the console, errors, CSP)."""
        entries: list[dict[str, Any]] = self.browser.get_log("browser")  # type: ignore[no-untyped-call]
        return entries

    def csp_violations(self) -> list[str]:
        return [
            entry["message"]
            for entry in self.browser_log()
            if "Content Security Policy" in entry["message"]
        ]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; scripts/test installs chromium and chromium-driver")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    root = tmp_path_factory.mktemp("console")
    federation = root / "federation.json"
    federation.write_text(json.dumps(TINY_FEDERATION))
    rest = f"127.0.0.1:{free_port()}"
    server = ControlPlaneProcess(
        root / "cp", free_port(), ("--http-listen", rest, "--federation-file", str(federation))
    )
    server.rest_url = f"http://{rest}"
    server.start()
    token_file = root / "agent-token"
    token_file.write_text(server.admin_token)
    with (root / "agent.log").open("wb") as log:
        agent = subprocess.Popen(
            [
                sys.executable, "-m", "agent.main",
                "--backend", "sim", "--sim-count", "2", "--sim-model", "nvidia-l4",
                "--sim-pattern", "sine", "--node-name", "console-node", "--provider", "lab",
                "--control-plane", server.address, "--token-file", str(token_file),
                "--interval", "0.2", "--kubernetes", "off",
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip
    try:
        yield server
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1360,900",
        "--disable-gpu",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(server: ControlPlaneProcess, browser: webdriver.Chrome, tmp_path: Path) -> Console:
    """Screenshots go to tmp_path, or to FLARE_CONSOLE_SCREENSHOTS when it names a folder."""
    named = os.environ.get("FLARE_CONSOLE_SCREENSHOTS")
    folder = Path(named) if named else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return Console(server, browser, folder)
