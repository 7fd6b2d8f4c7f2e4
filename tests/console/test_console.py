"""The web console in real headless Chromium, against a real control plane."""

from __future__ import annotations

import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.console.conftest import Console

TRAINING_YAML = """intent:
  objective: OBJECTIVE_COST_MINIMIZATION
  workload:
    type: WORKLOAD_TYPE_JOB
    name: console-training
    image: ghcr.io/example/train:1.0
    resources:
      gpu: {model: nvidia-a100, count: 2}
  constraints:
    location: EU
"""
BAD_YAML = """intent:
  objective: OBJECTIVE_COST_MINIMIZATION
  workload:
    type: WORKLOAD_TYPE_JOB
    name: console-bad
    resources:
      gpu: {model: nvidia-a100, count: -2}
"""


def type_intent(console: Console, text: str) -> None:
    area = console.wait(lambda: console.browser.find_element(By.ID, "intent-text"))
    area.send_keys(Keys.CONTROL, "a")
    area.send_keys(Keys.DELETE)
    area.send_keys(text)


def state_shown(console: Console) -> str:
    return (
        console.browser.find_element(By.CSS_SELECTOR, "h1 .state").get_attribute("data-state") or ""
    )


def test_create_watch_it_run_and_cancel(console: Console) -> None:
    console.open(console.server.admin_token, "new")
    type_intent(console, TRAINING_YAML)
    console.browser.find_element(By.ID, "plan").click()
    console.wait(  # the dry run's explanation
        lambda: console.browser.find_elements(By.CSS_SELECTOR, "table.candidates tbody tr")
    )
    assert "eu-cheap" in console.text("table.candidates tbody tr")
    console.browser.find_element(By.ID, "create").click()

    console.wait(lambda: "#/intents/tenants/" in console.browser.current_url)
    name = console.browser.current_url.split("#/intents/", 1)[1]
    console.wait(lambda: state_shown(console) == "RUNNING")  # pushed by the watch, no reload
    assert "eu-cheap" in console.text("#placement")
    assert "ie-a100 (2)" in console.text("#placement")
    reached = [row.text for row in console.rows("history")]
    assert any("RUNNING" in row for row in reached), reached
    console.shot("intent-running")

    console.browser.find_element(By.ID, "cancel").click()
    console.wait(lambda: state_shown(console) == "CANCELLED")
    assert console.api("GET", f"/api/v1/{name}")["intent"]["state"] == "STATE_CANCELLED"
    assert console.browser.find_element(By.ID, "cancel").get_attribute("disabled") is not None

    console.go("intents")
    row = console.wait(
        lambda: console.browser.find_element(By.CSS_SELECTOR, f'#intents tr[data-name="{name}"]')
    )
    assert "CANCELLED" in row.text
    console.shot("intents")
    assert console.csp_violations() == []


def test_a_bad_intent_shows_each_field_path_and_keeps_the_text(console: Console) -> None:
    console.open(console.server.admin_token, "new")
    type_intent(console, BAD_YAML)
    console.browser.find_element(By.ID, "create").click()
    fields = console.wait(
        lambda: [e.text for e in console.browser.find_elements(By.CSS_SELECTOR, ".violations code")]
    )
    assert "intent.workload.image" in fields, fields
    assert "intent.workload.resources.gpu.count" in fields, fields
    assert "INVALID_ARGUMENT" in console.text(".error")
    # Nothing the user wrote is lost, and nothing was created.
    area = console.browser.find_element(By.ID, "intent-text")
    assert area.get_property("value") == BAD_YAML
    listed = console.api("GET", "/api/v1/intents?page_size=200").get("intents", [])
    assert not any(i["workload"]["name"] == "console-bad" for i in listed)
    console.shot("bad-intent")

    type_intent(console, "intent: {workload: &w {name: x}, other: *w}")
    console.browser.find_element(By.ID, "create").click()
    console.wait(lambda: "aliases" in console.text(".violations"))


def test_a_tenant_token_sees_only_its_own_intents(console: Console) -> None:
    acme = console.token("acme", "intents:read", "intents:write", "offers:read")
    globex = console.token("globex", "intents:read", "intents:write", "offers:read")
    spec = {
        "objective": "OBJECTIVE_COST_MINIMIZATION",
        "workload": {"type": "WORKLOAD_TYPE_JOB", "name": "w", "image": "busybox"},
    }
    mine = console.api("POST", "/api/v1/intents", {"intent": spec}, token=acme)["intent"]["name"]
    theirs = console.api("POST", "/api/v1/intents", {"intent": spec}, token=globex)["intent"]
    console.open(acme, "intents")
    console.wait(lambda: console.rows("intents"))
    shown = [row.get_attribute("data-name") for row in console.rows("intents")]
    assert shown == [mine]

    console.go(f"intents/{theirs['name']}")
    error = console.wait(lambda: console.text(".error"))
    assert "NOT_FOUND" in error or "PERMISSION_DENIED" in error, error
    assert "busybox" not in console.browser.page_source


def test_the_gpu_table_updates_live_without_a_reload(console: Console) -> None:
    console.open(console.server.admin_token, "gpus")
    console.browser.execute_script("window.notReloaded = true")
    rows = console.wait(lambda: console.rows("gpus") if len(console.rows("gpus")) == 2 else None)
    assert all("console-node" in row.text and "nvidia-l4" in row.text for row in rows)
    first = console.text("#live")
    console.wait(lambda: console.text("#live") != first)  # a newer sample arrived
    readings = {console.text("#gpus tbody tr .bar em")}

    def three_readings() -> bool:
        readings.add(console.text("#gpus tbody tr .bar em"))
        return len(readings) > 2

    console.wait(three_readings)
    assert console.browser.execute_script("return window.notReloaded") is True
    console.shot("gpus")


def test_offers_are_filtered(console: Console) -> None:
    console.open(console.server.admin_token, "offers")
    console.wait(lambda: len(console.rows("offers")) >= 3)
    field = console.browser.find_element(By.NAME, "gpu.model")
    field.send_keys("nvidia-h100")
    field.submit()
    console.wait(lambda: len(console.rows("offers")) == 1)
    assert "us-h100" in console.rows("offers")[0].text
    console.shot("offers")


def test_no_secret_is_ever_rendered(console: Console) -> None:
    bot = {"token": {"display_name": "ci-bot", "scopes": ["intents:read"]}}
    made = console.api("POST", "/api/v1/auth/tokens", bot)
    console.open(console.server.admin_token, "tokens")
    row = console.wait(
        lambda: console.browser.find_element(
            By.CSS_SELECTOR, f'#tokens tr[data-name="{made["token"]["name"]}"]'
        )
    )
    assert "ci-bot" in row.text
    page = console.browser.page_source
    assert made["secret"] not in page
    assert console.server.admin_token not in page  # the signed-in token is not in the DOM either
    console.shot("tokens")


def test_the_console_is_served_with_a_strict_policy(console: Console) -> None:
    with urllib.request.urlopen(console.url, timeout=10) as response:
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
