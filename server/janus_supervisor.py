"""Runs the Janus our rooms use: started with us, health-checked, restarted, stopped with us.

Two modes. *Managed* (``make run``, tests): we write Janus's config from ours into a
private folder, start ``janus`` as a child (its API on a UNIX socket in that folder; when
serving on loopback with the getifaddrs shim preloaded, see ``janus_loopback.c``), and
restart it with backoff if it exits or stops answering. The child gets SIGKILL if we die
(``setpriv --pdeathsig``), so a crashed server never leaves a Janus behind. *External*
(docker-compose: Janus in its own container): we only connect, health-check and reconnect.

Either way the rest of the server sees one thing: ``state`` (``up`` with a live
``client``, or why not) and a callback on every change, so rooms can tell their people the
media relay is down and re-publish when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Callable

from . import janus_config
from .janus import JanusClient, JanusError

log = logging.getLogger("speech2face.janus")

HEALTH_PERIOD_S = 1.0
HEALTH_TIMEOUT_S = 2.0
HEALTH_MISSES = 2  # consecutive unanswered checks before Janus counts as hung
START_TIMEOUT_S = 10.0
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
STOP_GRACE_S = 3.0
SHIM_SOURCE = Path(__file__).with_name("janus_loopback.c")

StateListener = Callable[[str], None]


class JanusUnavailable(RuntimeError):
    """Janus cannot run here (not installed, or no compiler for the loopback shim)."""


def find_janus() -> str | None:
    return shutil.which("janus") or next((p for p in ("/usr/bin/janus", "/opt/janus/bin/janus") if os.access(p, os.X_OK)), None)


def find_plugin_dir() -> str:
    """Janus's module folder (plugins/, transports/ …) for this machine's multiarch."""
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    for candidate in (f"/usr/lib/{arch}/janus", "/usr/lib/janus", "/usr/lib64/janus", "/opt/janus/lib/janus"):
        if candidate and os.path.isdir(os.path.join(candidate, "plugins")):
            return candidate
    return janus_config.PLUGIN_DIR


def missing_requirements(loopback: bool) -> list[str]:
    """What this machine lacks to run a managed Janus, as Debian package names."""
    missing = []
    if find_janus() is None:
        missing.append("janus")
    if loopback and shutil.which("cc") is None and shutil.which("gcc") is None:
        missing += ["gcc", "libc6-dev"]
    return missing


def build_loopback_shim(out_dir: Path) -> Path:
    """Compile janus_loopback.c into ``out_dir`` (Janus's private 0700 run folder, removed
    when Janus stops: nothing is left in the user's home, and no other user can plant a
    library that Janus would preload); reused across restarts of the same run."""
    out = out_dir / "janus_loopback.so"
    if out.exists():
        return out
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise JanusUnavailable("Janus on 127.0.0.1 needs a C compiler for its loopback shim: apt-get install gcc libc6-dev")
    proc = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise JanusUnavailable(f"could not compile the Janus loopback shim: {proc.stderr.strip()[:500]}")
    return out


class JanusSupervisor:
    def __init__(
        self,
        settings: janus_config.JanusSettings,
        *,
        managed: bool = True,
        url: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.settings = settings
        self.managed = managed
        self._url = url
        self._binary = binary
        self.state = "stopped"
        self.detail = ""
        self.client: JanusClient | None = None
        self.generation = 0  # +1 each time Janus comes (back) up: sessions from before are gone
        self.restarts = 0
        self.up_since: float | None = None
        self.pid: int | None = None
        self._listeners: list[StateListener] = []
        self._task: asyncio.Task | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task | None = None
        self._runtime: Path | None = None
        self._errors: deque[str] = deque(maxlen=5)
        self._changed = asyncio.Event()
        self._stopping = False
        self._kick = asyncio.Event()

    # --- public ---
    def on_state(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    async def start(self, wait: float = START_TIMEOUT_S) -> None:
        """Start supervising; waits up to ``wait`` s for Janus to be up (never raises for a down Janus)."""
        if self._task is not None:
            return
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("janus-supervisor")
        if wait > 0:
            await self.wait_up(wait)

    async def wait_up(self, timeout: float) -> bool:
        """Wait until Janus is up (True) or cannot run here / timeout (False)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.state not in ("up", "unavailable"):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return self.state == "up"

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._teardown()
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None
        self._set_state("stopped", "")

    def status(self) -> dict:
        body = {"state": self.state, "managed": self.managed, "restarts": self.restarts}
        if self.detail:
            body["detail"] = self.detail
        if self.up_since is not None and self.state == "up":
            body["up_s"] = round(time.monotonic() - self.up_since, 1)
        return body

    # --- the loop ---
    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                await self._bring_up()
                attempt = 0
                reason = await self._watch()
            except JanusUnavailable as exc:
                self._set_state("unavailable", str(exc))
                log.warning("rooms are unavailable: %s", exc)
                return
            except (OSError, JanusError, asyncio.TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self._stopping:
                return
            await self._teardown()
            self._set_state("down", reason)
            log.warning("Janus is down (%s); restarting", reason)
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1
            self.restarts += 1

    async def _bring_up(self) -> None:
        self._set_state("starting", "")
        if self.managed:
            await self._spawn()
        client = await self._connect()
        try:
            await client.info(timeout=HEALTH_TIMEOUT_S)
        except BaseException:  # cancelled by stop(), or no answer: the session must not leak
            await client.close()
            raise
        self.client = client
        self.generation += 1
        self.up_since = time.monotonic()
        self._set_state("up", "")

    async def _spawn(self) -> None:
        binary = self._binary or find_janus()
        if binary is None:
            raise JanusUnavailable("Janus is not installed (Debian: apt-get install janus)")
        env = dict(os.environ)
        if self._runtime is None:
            self._runtime = Path(tempfile.mkdtemp(prefix="s2f-janus-"))
        if self.settings.loopback:
            env["LD_PRELOAD"] = str(await asyncio.to_thread(build_loopback_shim, self._runtime))
        # a preset socket path lets other worker processes share this Janus (S2F_JANUS=unix:PATH)
        sock = Path(self.settings.api_unix) if self.settings.api_unix else self._runtime / janus_config.SOCKET_NAME
        self.settings = _with(self.settings, api_unix=str(sock), plugin_dir=find_plugin_dir())
        cfg = janus_config.write(self.settings, self._runtime / "conf")
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        argv = [binary, "-C", str(cfg), "-F", str(cfg.parent), "-o"]
        setpriv = shutil.which("setpriv")
        if setpriv:
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        self._proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self._proc.pid
        self._log_task = asyncio.ensure_future(self._pump_log(self._proc))
        self._log_task.set_name("janus-log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not sock.exists():
            if self._proc.returncode is not None:
                await asyncio.sleep(0.05)  # let the log pump read Janus's last words
                raise OSError(f"janus exited with code {self._proc.returncode}: {self._last_error()}")
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError(f"janus did not open its API within {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.02)

    async def _connect(self) -> JanusClient:
        url = self.settings.api_url() if self.managed else (self._url or self.settings.api_url())
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            client = JanusClient(url, self.settings.api_secret)
            try:
                await client.connect(timeout=2.0)
                return client
            except asyncio.CancelledError:
                await client.close()
                raise
            except Exception as exc:  # aiohttp raises assorted errors
                await client.close()
                if self._proc is not None and self._proc.returncode is not None:
                    raise OSError(f"janus exited with code {self._proc.returncode}: {self._last_error()}") from exc
                if time.monotonic() > deadline:
                    raise OSError(f"cannot reach Janus at {url}: {exc}") from exc
                await asyncio.sleep(0.1 if self.managed else 1.0)

    async def _watch(self) -> str:
        """Return why Janus is no longer usable: it exited, it hung, or the connection dropped."""
        misses = 0
        client = self.client
        assert client is not None
        while True:
            if self._proc is not None and self._proc.returncode is not None:
                return f"janus exited with code {self._proc.returncode}"
            if client.closed.is_set():
                return client.close_reason or "connection to Janus lost"
            try:
                await client.info(timeout=HEALTH_TIMEOUT_S)
                misses = 0
            except JanusError as exc:
                if client.closed.is_set() or (self._proc is not None and self._proc.returncode is not None):
                    continue
                misses += 1
                if misses >= HEALTH_MISSES:
                    return f"janus stopped answering ({exc.reason})"
            waits = [asyncio.ensure_future(client.closed.wait())]
            if self._proc is not None:
                waits.append(asyncio.ensure_future(self._proc.wait()))
            _, pending = await asyncio.wait(waits, timeout=HEALTH_PERIOD_S, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _teardown(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log_task is not None:
            await asyncio.gather(self._log_task, return_exceptions=True)
            self._log_task = None
        self.pid = None

    async def _pump_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text.startswith(("[FATAL]", "[ERR]")):
                self._errors.append(text)
            log.debug("janus: %s", text)

    def _last_error(self) -> str:
        return self._errors[-1] if self._errors else "no error logged"

    def _set_state(self, state: str, detail: str) -> None:
        changed = state != self.state
        self.state, self.detail = state, detail
        self._changed.set()
        if changed:
            for listener in list(self._listeners):
                try:
                    listener(state)
                except Exception:
                    log.exception("Janus state listener failed")

    # used by tests and the benchmark: how Janus is doing from the outside
    def kill(self) -> None:
        """SIGKILL the managed Janus (a crash, as far as we can tell): the loop restarts it."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()


def _with(settings: janus_config.JanusSettings, **changes) -> janus_config.JanusSettings:
    from dataclasses import replace

    return replace(settings, **changes)
