"""The rsync invocation of a push: its environment and run files (the password and exclude files, the TLS
leg through stunnel) and a run that waits while the slave's daemon is still busy with the previous session."""
from __future__ import annotations

import os
import shutil
import time

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root
from hotsync_events.sync import tls
from hotsync_events.sync.rsync import over_stunnel, run_rsync, stunnel_env
from hotsync_events.sync.settings import Settings

__all__ = ["CLIENT_CONF", "prepare", "run_with_retry", "write_if_changed"]

CLIENT_CONF = "/etc/stunnel/hotsync-client.conf"


def run_with_retry(args: list[str], env: dict, wait: float = 10.0, progress=None):
    """Run rsync; while the slave's daemon refuses for "max connections" (its previous session still runs
    its post-xfer hook), try again for up to *wait* seconds."""
    deadline = time.monotonic() + wait
    delay = 0.02
    args = over_stunnel(args, env)
    while True:
        run = run_rsync(args, env=env, progress=progress)
        if run.returncode != 5 or "max connections" not in run.stderr or time.monotonic() > deadline:
            return run
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def prepare(root: Root, cfg: Settings, lists):
    """The environment and the run files (password 0600, exclude list); a str is an error."""
    rsync = shutil.which("rsync")
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if rsync is None or stunnel is None:
        return "rsync and stunnel4 must be installed on the master", {}
    client = root.join(CLIENT_CONF)
    if not client.is_file():
        return (f"{client} is missing: run signal-event nethserver-hotsync-save on this master"), {}
    if tls.host_fingerprint(root) is None:
        return "this master has no TLS certificate yet: run signal-event nethserver-hotsync-save", {}
    run = root.run_dir
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o700)
    files = {"password": str(run / "rsync.password"), "exclude": str(run / "sync.exclude"), "rsync": rsync,
             "stunnel": stunnel}
    write_if_changed(files["password"], (cfg.password + "\n").encode(), 0o600)
    write_if_changed(files["exclude"], lists.exclude_file_text().encode("utf-8", "surrogateescape"), 0o600)
    env = stunnel_env({k: v for k, v in os.environ.items() if not k.startswith("RSYNC_")}, stunnel, str(client))
    env["LC_ALL"] = "C.UTF-8"
    return env, files


def write_if_changed(path: str | os.PathLike, data: bytes, mode: int) -> bool:
    """atomic_write, skipped (no fsync) when the file already holds *data* with *mode*; whether it wrote."""
    try:
        st = os.stat(path)
        if st.st_mode & 0o777 == mode and st.st_uid == os.geteuid():
            with open(path, "rb") as fh:
                if fh.read() == data:
                    return False
    except OSError:
        pass
    atomic_write(path, data, mode=mode)
    return True
