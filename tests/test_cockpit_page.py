"""The Cockpit page, driven as a sysadmin would: a real cockpit-ws per host, two paired roots, headless Chromium.

Each host of the pair (tests/sync_pair.py) gets its page with ``hotsync cockpit install`` and its own
``cockpit-ws --no-tls --local-session=cockpit-bridge`` on loopback, whose ``HOTSYNC_ROOT`` names that root
and whose ``XDG_DATA_DIRS`` names ``<root>/usr/share`` (where Cockpit finds ``cockpit/hotsync/manifest.json``).
The bridge runs as root, so Cockpit grants administrative access (superuser) and the page shows its actions.

The tests run in file order, as one story: the dashboards, a refused setting, a saved one, a held push
released from the page, the history, a takeover from the slave's page, the fenced old master's page.
Each view is screenshotted to the test's temp dir; ``HOTSYNC_UPDATE_SCREENSHOTS=1`` also writes them to
docs/cockpit/ (README.md and docs/cockpit.md show them).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from sync_pair import BIN, PASSWORD, Pair, cli, free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

COCKPIT_WS = "/usr/lib/cockpit/cockpit-ws"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "cockpit"
HOST = socket.gethostname()


def _missing() -> list[str]:
    out = []
    for path, pkg in ((COCKPIT_WS, "cockpit-ws"), (CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            out.append(pkg)
    if not shutil.which("cockpit-bridge"):
        out.append("cockpit-bridge")
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("selenium (pip)")
    return out


if _missing():
    pytest.skip(f"the Cockpit page's tests need {', '.join(_missing())} (make deps; make venv)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pair():
    # in a folder any user may traverse: the read-only test's cockpit-ws runs as nobody (pytest's own temp
    # folders are root's, 0700)
    base = Path(tempfile.mkdtemp(prefix="hotsync-cockpit-"))
    base.chmod(0o755)
    p = Pair(base)
    try:
        p.pair()
        M = p.master
        p.include("/srv/shop")
        (M / "srv/shop/invoices").mkdir(parents=True)
        for i in range(30):
            (M / f"srv/shop/invoices/2026-{i:03d}.txt").write_text(f"invoice {i}\n" * (i + 1))
        for _ in range(3):                          # a few runs for the chart
            cp = p.sync()
            assert cp.returncode == 0, cp.stdout + cp.stderr
            (M / "srv/shop/hours.txt").write_text(f"open 9-18, {time.time()}\n")
        p.settled()
        for root in (p.master, p.slave):
            cp = cli("hotsync", "cockpit", "install", root=root)
            assert cp.returncode == 0, cp.stderr
            assert (root / "usr/share/cockpit/hotsync/manifest.json").is_file()
        yield p
    finally:
        p.close()
        shutil.rmtree(base, ignore_errors=True)


def _start_ws(root: Path, port: int, *, address: str = "127.0.0.1", user: str | None = None,
              path: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "HOTSYNC_ROOT": str(root), "XDG_DATA_DIRS": f"{root}/usr/share:/usr/share",
           "PATH": path or f"{BIN}:{os.environ.get('PATH', os.defpath)}"}
    argv = [COCKPIT_WS, "--no-tls", "--local-session=cockpit-bridge", "--address", address, "--port", str(port)]
    if user:                  # the bridge runs as the user cockpit-ws runs as: no sudo, no administrative access
        env.update(HOME="/tmp", USER=user, LOGNAME=user)
        argv = ["setpriv", f"--reuid={user}", f"--regid={user_group(user)}", "--clear-groups", *argv]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return proc
        except OSError:
            assert proc.poll() is None, f"cockpit-ws exited {proc.returncode}"
            time.sleep(0.05)
    raise AssertionError(f"cockpit-ws does not listen on {port}")


@pytest.fixture(scope="module")
def ws(pair):
    procs, urls = [], {}
    try:
        # each host on an address of its own, as two hosts are: the browser keeps their cookies apart (a
        # cookie names a host, not a port, and both cockpit-ws call their session cookie "cockpit")
        for name, root, address in (("master", pair.master, "127.0.0.1"), ("slave", pair.slave, "127.0.0.2")):
            port = free_port()
            procs.append(_start_ws(root, port, address=address))
            urls[name] = f"http://{address}:{port}"
        yield urls
    finally:
        for proc in procs:          # cockpit-ws and the bridges it started: their own process group
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


def user_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def _readable_install(where: Path) -> Path:
    """Our package, installed (not editable) with its runtime dependencies in *where*, a folder every user may
    read: the checkout and its venv may sit where another user may not enter (a 0700 clone, root's home)."""
    import importlib.metadata as md
    import re
    import sys

    site = where / "site"
    src = where / "src"               # built from a copy: setuptools writes build/ beside what it builds
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                             "tests", "bench", "docs", "examples"))
    cp = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                         "--no-index", "--target", str(site), str(src)], capture_output=True, text=True,
                        timeout=300)
    assert cp.returncode == 0, cp.stderr[-2000:]
    todo, seen = [r for r in md.requires("hotsync_events") or [] if "extra ==" not in r], set()
    while todo:                                     # the runtime requirements, and theirs
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower()
        if name in seen:
            continue
        seen.add(name)
        dist = md.distribution(name)
        for f in dist.files or []:
            src = Path(dist.locate_file(f))
            if src.is_file() and ".." not in f.parts and "__pycache__" not in f.parts:
                (site / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, site / f)
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    for d in [where, *where.rglob("*")]:
        d.chmod(0o755 if d.is_dir() else 0o644)
    return site


def _commands_for(user: str, where: Path) -> str:
    """A PATH where *user* finds our commands: each is a small script run by an interpreter of the same
    version that the user may run, over a readable install of our package (``_readable_install``)."""
    import sys

    where.mkdir(mode=0o755)
    site = _readable_install(where / "lib")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bindir = where / "bin"
    bindir.mkdir(mode=0o755)
    for name, module, func in (("hotsync", "hotsync_events.cli.hotsync", "main"),
                               ("config", "hotsync_events.cli.config", "config_main"),
                               ("signal-event", "hotsync_events.cli.signal_event", "main"),
                               ("hotsync-promote", "hotsync_events.cli.promote", "entry")):
        script = bindir / name
        script.write_text(f"#!/usr/bin/python{version} -I\nimport sys\nsys.path.insert(0, {str(site)!r})\n"
                          f"from {module} import {func}\nsys.exit({func}())\n")
        script.chmod(0o755)
    cp = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user_group(user)}", "--clear-groups",
                         str(bindir / "hotsync"), "--version"], capture_output=True, text=True, timeout=60,
                        cwd="/")
    assert cp.returncode == 0, f"{user} cannot run our commands: {cp.stderr[-600:]}"
    return f"{bindir}:/usr/bin:/bin"


@pytest.fixture(scope="module")
def ws_readonly(pair):
    """A cockpit-ws for the master's root run as nobody: Cockpit grants it no administrative access."""
    path = _commands_for("nobody", pair.master.parent / "bin-nobody")
    port = free_port()
    proc = _start_ws(pair.master, port, address="127.0.0.3", user="nobody", path=path)
    try:
        yield {"master": f"http://127.0.0.3:{port}"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="hotsync-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """``shots(driver, name)``: a full-page screenshot in the temp dir, and in docs/cockpit/ when asked."""
    out = tmp_path_factory.mktemp("screenshots")
    update = bool(os.environ.get("HOTSYNC_UPDATE_SCREENSHOTS"))

    def take(driver, name: str) -> Path:
        height = driver.execute_script("return Math.max(document.body.scrollHeight, 600)")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": int(height) + 16, "deviceScaleFactor": 1, "mobile": False})
        try:
            path = out / f"{name}.png"
            driver.save_screenshot(str(path))
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        assert path.stat().st_size > 10_000
        if update:
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS / path.name)
        return path

    return take


# ---------------------------------------------------------------------------------------------- helpers
def page(ws, who: str, tab: str = "dashboard") -> str:
    return f"{ws[who]}/cockpit/@localhost/hotsync/index.html#{tab}"


def wait(driver, cond, timeout: float = 30, what: str = ""):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d))
    except Exception as exc:
        logs = [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        body = driver.execute_script("return document.body ? document.body.innerText : ''")[:3000]
        raise AssertionError(f"timed out waiting for {what or cond}; browser console: {logs}; page:\n{body}") from exc


def text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def host_window(driver, base: str) -> None:
    """Switch to the browser tab of the cockpit-ws at *base*, opening it the first time.

    One tab per host stays open for the whole module, as a sysadmin keeps one per server: Debian's
    cockpit-ws (287) ends a --local-session a while after its last browser connection closed and does not
    start another ("Your session has expired"), so a page must not leave one host for the other."""
    windows = driver.__dict__.setdefault("_hotsync_windows", {})
    if base in windows:
        driver.switch_to.window(windows[base])
        return
    if windows:
        driver.switch_to.new_window("tab")
    windows[base] = driver.current_window_handle


def open_view(driver, ws, who: str, tab: str) -> None:
    host_window(driver, ws[who])
    driver.get("about:blank")           # a fresh load, even when only the #tab would change
    driver.get(page(ws, who, tab))
    wait(driver, lambda d: d.find_element(By.ID, "d-role").get_attribute("textContent") not in ("", "…"),
         what="the status")
    wait(driver, lambda d: d.find_element(By.ID, tab).is_displayed(), what=f"the {tab} view")


def status(root: Path) -> dict:
    cp = cli("hotsync", "status", "--json", root=root)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def getprop(root: Path, prop: str) -> str:
    return cli("config", "getprop", "hotsync", prop, root=root).stdout.strip()


# ---------------------------------------------------------------------------------------------- tests
def test_cockpit_ws_serves_the_package_without_a_login(ws):
    with urllib.request.urlopen(f"{ws['master']}/cockpit/@localhost/hotsync/manifest.json", timeout=10) as r:
        assert r.status == 200
        manifest = json.loads(r.read())
    assert manifest["menu"]["index"]["label"] == "HotSync"
    with urllib.request.urlopen(f"{ws['master']}/cockpit/@localhost/hotsync/index.html", timeout=10) as r:
        assert b"hotsync.js" in r.read()


def test_master_dashboard_shows_the_real_status(pair, ws, browser, shots):
    st = status(pair.master)
    open_view(browser, ws, "master", "dashboard")
    assert text(browser, "#d-role") == "master"
    assert text(browser, "#d-peer") == st["peer"]
    assert text(browser, "#d-fp").replace("\n", "") == st["fingerprint"]
    assert text(browser, "#d-peer-fp").replace("\n", "") == st["peer_fingerprint"]
    assert text(browser, "#d-health") == st["health"]["state"].upper()
    assert "success" in text(browser, "#d-last-run")
    assert "not running" in text(browser, "#d-realtime")
    # the chart: one bar per run in the sync log, in each of its three rows (duration, files, bytes)
    runs = json.loads(cli("hotsync", "log", "--json", root=pair.master).stdout)
    assert len(runs) >= 4
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs-chart rect.bar")) == 3 * len(runs),
         what="the chart of the runs")
    # the RPO counts up without a reload
    first = int(browser.find_element(By.ID, "d-rpo").get_attribute("data-seconds"))
    wait(browser, lambda d: int(d.find_element(By.ID, "d-rpo").get_attribute("data-seconds")) >= first + 2,
         timeout=10, what="the copy's age counting up")
    assert not browser.find_element(By.CSS_SELECTOR, '.tab[data-tab="takeover"]').is_displayed()
    assert "readonly" not in browser.find_element(By.TAG_NAME, "body").get_attribute("class")
    shots(browser, "dashboard-master")


def test_slave_dashboard_shows_the_real_status(pair, ws, browser, shots):
    st = status(pair.slave)
    open_view(browser, ws, "slave", "dashboard")
    assert text(browser, "#d-role") == "slave"
    assert text(browser, "#d-peer") == st["peer"]
    assert text(browser, "#d-peer-fp").replace("\n", "") == st["master_fingerprint"] == status(pair.master)["fingerprint"]
    assert "pairing: trusted" in text(browser, "#d-pairing")
    assert "rsync exit 0" in text(browser, "#d-last-run")
    assert not browser.find_element(By.CSS_SELECTOR, '.tab[data-tab="held"]').is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, '.tab[data-tab="takeover"]').is_displayed()
    shots(browser, "dashboard-slave")


def test_without_administrative_access_the_status_is_read_only(pair, ws_readonly, browser, shots):
    """A user Cockpit grants no administrative access (the bridge runs as nobody: no sudo) sees the status,
    from what any user may read of it (hotsync status's public part), and no button, no form, no action."""
    st = status(pair.master)
    host_window(browser, ws_readonly["master"])
    browser.get("about:blank")
    browser.get(page(ws_readonly, "master", "settings"))
    wait(browser, lambda d: "readonly" in d.find_element(By.TAG_NAME, "body").get_attribute("class"),
         what="Cockpit's answer: no administrative access")
    wait(browser, lambda d: d.find_element(By.ID, "d-role").text == "master", what="the status")
    assert browser.find_element(By.ID, "dashboard").is_displayed()          # not the settings asked for
    assert text(browser, "#d-health") == st["health"]["state"].upper()
    assert text(browser, "#d-peer") == st["peer"]
    assert text(browser, "#d-fp").replace("\n", "") == st["fingerprint"]
    assert "success" in text(browser, "#d-last-run")
    first = int(browser.find_element(By.ID, "d-rpo").get_attribute("data-seconds"))
    wait(browser, lambda d: int(d.find_element(By.ID, "d-rpo").get_attribute("data-seconds")) > first, timeout=10,
         what="the copy's age counting up")
    assert "Read-only" in text(browser, "#access") and "public part" in text(browser, "#access")
    visible = [b.text for b in browser.find_elements(By.TAG_NAME, "button") if b.is_displayed()]
    assert visible == ["Dashboard"], visible
    assert not [i for i in browser.find_elements(By.CSS_SELECTOR, "input, select") if i.is_displayed()]
    # what needs root says so, and nothing is shown from behind the commands' back
    wait(browser, lambda d: "administrative access" in d.find_element(By.ID, "d-dbs").text
         or "Permission denied" in d.find_element(By.ID, "d-dbs").text, what="the databases card's refusal")
    shots(browser, "readonly")


def test_a_refused_value_shows_the_schemas_message_and_changes_nothing(pair, ws, browser, shots):
    M = pair.master
    before = (getprop(M, "interval"), getprop(M, "MailTo"))
    history = cli("config", "history", "hotsync", "--json", root=M).stdout
    open_view(browser, ws, "master", "settings")
    wait(browser, lambda d: d.find_element(By.ID, "f-interval").get_attribute("value") == before[0], what="the form")
    wait(browser, lambda d: "allowed: a whole number from 1 to 1440" in text(d, '.field[data-prop="interval"] .help'),
         what="the schema's words under the field")
    mail = browser.find_element(By.ID, "f-MailTo")
    mail.clear()
    mail.send_keys("admin@example.org")
    interval = browser.find_element(By.ID, "f-interval")
    interval.clear()
    interval.send_keys("every hour")
    browser.find_element(By.ID, "save").click()
    err = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '.field[data-prop="interval"] .error').text,
               what="the schema's message under the field")
    # the very message `config setprop` gives (it is the command that refused it)
    cp = cli("config", "setprop", "hotsync", "interval", "every hour", root=M)
    assert cp.returncode == 3
    assert err == cp.stderr.strip().removeprefix("config: ")
    assert "refused configuration hotsync interval='every hour': allowed is a whole number from 1 to 1440" in err
    assert text(browser, "#save-result") == "nothing was changed"
    assert (getprop(M, "interval"), getprop(M, "MailTo")) == before      # MailTo neither: one setprop, refused whole
    assert cli("config", "history", "hotsync", "--json", root=M).stdout == history
    assert not browser.find_element(By.ID, "event-progress").is_displayed()
    shots(browser, "settings-refused")


def test_settings_are_saved_and_applied_with_the_save_event(pair, ws, browser, shots):
    M = pair.master
    open_view(browser, ws, "master", "settings")
    wait(browser, lambda d: d.find_element(By.ID, "f-interval").get_attribute("value") == "15", what="the form")
    for field, value in (("f-MailTo", "admin@example.org"), ("f-MaxDeletePercent", "25"),
                         ("f-password", PASSWORD), ("f-password2", PASSWORD + "x")):
        e = browser.find_element(By.ID, field)
        e.clear()
        e.send_keys(value)
    browser.find_element(By.ID, "save").click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '.field[data-prop="password2"] .error').text
         == "the two passwords differ", what="the confirmation's message")
    assert getprop(M, "MailTo") == "root@localhost"
    again = browser.find_element(By.ID, "f-password2")
    again.clear()
    again.send_keys(PASSWORD)       # the same password as the slave's: the pair keeps working (the next test pushes)
    browser.find_element(By.ID, "save").click()
    wait(browser, lambda d: "SUCCESS" in d.find_element(By.ID, "event-result").text, timeout=60,
         what="the save event's end")
    steps = browser.find_elements(By.CSS_SELECTOR, "#event-steps li")
    assert len(steps) >= 5 and all("success" in li.text for li in steps), [li.text for li in steps]
    assert "adjust-services" in [li.get_attribute("data-action") for li in steps]
    assert getprop(M, "MailTo") == "admin@example.org" and getprop(M, "MaxDeletePercent") == "25"
    hist = json.loads(cli("config", "history", "rsyncd", "--json", root=M).stdout)
    assert hist[-1]["prop"] == "password" and PASSWORD not in json.dumps(hist)    # set, masked, never on argv
    assert PASSWORD not in hist[-1]["command"]
    shots(browser, "settings-saved")


def test_a_held_push_is_released_from_the_page(pair, ws, browser, shots):
    M, S = pair.master, pair.slave
    gone = [f"srv/shop/invoices/2026-{i:03d}.txt" for i in range(20)]
    for rel in gone:
        (M / rel).unlink()
    cp = pair.sync()
    assert cp.returncode == 3, cp.stdout + cp.stderr          # held back by the guard: the slave untouched
    assert all((S / rel).exists() for rel in gone)
    open_view(browser, ws, "master", "held")
    wait(browser, lambda d: d.find_element(By.ID, "held-one").is_displayed(), what="the held push")
    listed = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#held-list li")]
    assert sorted(listed) == sorted(gone)
    assert "more than MaxDeletePercent=25%" in text(browser, "#held-message")
    button = browser.find_element(By.ID, "held-release")
    assert not button.is_enabled()
    browser.find_element(By.ID, "held-confirm").send_keys("19")
    assert not button.is_enabled()
    box = browser.find_element(By.ID, "held-confirm")
    box.clear()
    box.send_keys(str(len(gone)))
    wait(browser, lambda d: button.is_enabled(), what="the typed confirmation")
    shots(browser, "held")
    button.click()
    wait(browser, lambda d: "(done)" in d.find_element(By.ID, "held-output").text, timeout=90, what="the push")
    pair.settled()
    assert not any((S / rel).exists() for rel in gone)
    assert (S / "srv/shop/invoices/2026-025.txt").is_file()
    assert status(M)["last_run"]["result"] == "success"
    wait(browser, lambda d: not d.find_element(By.ID, "held-one").is_displayed(), what="the held view to clear")
    assert "No push is held back" in text(browser, "#held-none")


def test_history_and_logs_are_filterable(pair, ws, browser, shots):
    open_view(browser, ws, "master", "history")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#h-sync tbody tr")) >= 6, what="the sync log")
    config_rows = [tr.text for tr in browser.find_elements(By.CSS_SELECTOR, "#h-config tbody tr")]
    assert any("hotsync MailTo" in r and "admin@example.org" in r for r in config_rows)
    assert any("rsyncd password" in r for r in config_rows) and not any(PASSWORD in r for r in config_rows)
    Select(browser.find_element(By.ID, "h-result")).select_by_visible_text("held")
    visible = [tr for tr in browser.find_elements(By.CSS_SELECTOR, "#h-sync tbody tr") if tr.is_displayed()]
    assert len(visible) == 1 and "held" in visible[0].text
    Select(browser.find_element(By.ID, "h-result")).select_by_visible_text("any")
    browser.find_element(By.ID, "h-filter").send_keys("MaxDeletePercent")
    assert all("MaxDeletePercent" in tr.text for tr in browser.find_elements(By.CSS_SELECTOR, "#h-config tbody tr")
               if tr.is_displayed())
    browser.find_element(By.ID, "h-filter").clear()
    browser.find_element(By.ID, "h-filter").send_keys(" ")       # an input event: every row back
    shots(browser, "history")


def test_the_takeover_plan_shows_the_database_replicas_dry_run(pair, ws, browser, shots):
    """A slave whose database server runs as a replica: the takeover view shows what ``hotsync-promote
    --dry-run`` says of each replica (where it would take over, its lag, what would be lost; here the server
    is not running, and the page says the replica's dry run failed, as the command does)."""
    S = pair.slave
    assert cli("config", "set", "mysqld", "service", "DatabaseMode", "replica", root=S).returncode == 0
    (S / "var/lib/mysql").mkdir(parents=True)
    try:
        open_view(browser, ws, "slave", "takeover")
        wait(browser, lambda d: d.find_element(By.ID, "t-replicas").is_displayed(), what="the replicas' dry run")
        lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#t-replicas li")]
        assert lines and lines[0].startswith("database replica mysql"), lines
        assert "FAILED" in lines[0] and "error-text" in (browser.find_element(By.CSS_SELECTOR, "#t-replicas li")
                                                         .get_attribute("class") or ""), lines
        shots(browser, "takeover-replicas")
    finally:
        cli("config", "delete", "mysqld", root=S)
        (S / "var/lib/mysql").rmdir()
    open_view(browser, ws, "slave", "takeover")          # the next test starts from a plan without it
    wait(browser, lambda d: d.find_element(By.ID, "t-plan").is_displayed(), what="the plan")
    assert not browser.find_element(By.ID, "t-replicas").is_displayed()


def test_takeover_from_the_page_promotes_the_slave(pair, ws, browser, shots):
    S = pair.slave
    open_view(browser, ws, "slave", "takeover")
    wait(browser, lambda d: d.find_element(By.ID, "t-plan").is_displayed(), what="the plan")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '.refusal[data-why="master-alive"]'), what="the refusal")
    refusal = text(browser, '.refusal[data-why="master-alive"]')
    assert "it may be alive" in refusal and "--force overrides this" in refusal
    assert text(browser, "#t-last-complete") != "never"
    assert "lost to this host" in text(browser, "#t-lost")
    assert text(browser, "#t-host") == HOST
    button = browser.find_element(By.ID, "t-promote")
    browser.find_element(By.ID, "t-confirm-name").send_keys(HOST)
    assert not button.is_enabled()               # the refusal stands until --force is chosen
    browser.find_element(By.ID, "t-force").click()
    wait(browser, lambda d: button.is_enabled(), what="the typed confirmation")
    shots(browser, "takeover-plan")
    button.click()
    wait(browser, lambda d: "PROMOTED" in d.find_element(By.ID, "t-result").text, timeout=120, what="the promote")
    phases = browser.find_elements(By.CSS_SELECTOR, "#t-progress li")
    assert [li.get_attribute("data-phase") for li in phases] == ["verify", "fence", "links", "config", "databases",
                                                                 "steps",
                                                                 "role", "services"]
    assert all(li.text.startswith("done") for li in phases), [li.text for li in phases]
    assert "fence: pair epoch 1" in text(browser, "#t-log")
    st = status(S)
    assert st["role"] == "master" and st["promote"]["epoch"] == 1 and st["promote"]["forced"] is True
    wait(browser, lambda d: d.find_element(By.ID, "t-after").is_displayed(), what="the runbook's next steps")
    assert browser.find_element(By.ID, "t-post-restore").is_displayed()
    assert browser.find_element(By.ID, "t-repair").is_displayed()
    assert "127.0.0.1" in text(browser, "#t-repair")
    shots(browser, "takeover-done")


def test_the_fenced_old_master_shows_as_fenced_on_its_own_page(pair, ws, browser, shots):
    M = pair.master
    (M / "srv/shop/late.txt").write_text("written on the old master after the promote\n")
    cp = pair.sync()                                 # its next push: refused, FENCED
    assert cp.returncode != 0 and "FENCED" in cp.stdout + cp.stderr
    assert status(M)["status"] == "fenced"
    open_view(browser, ws, "master", "dashboard")
    wait(browser, lambda d: d.find_element(By.ID, "banner").is_displayed(), what="the FENCED banner")
    assert text(browser, "#banner").startswith("FENCED since ")
    assert text(browser, "#host-role") == "master: FENCED"
    assert text(browser, "#d-health") == "CRITICAL"
    assert text(browser, "#d-status") == "fenced"
    shots(browser, "fenced")
