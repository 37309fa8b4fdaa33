"""``speech2face serve --workers N``: one process per core, one port, one budget.

Why processes: aiortc (DTLS, SRTP, RTP packetisation, pacing) runs on one event loop and
holds the GIL, so one process cannot use a second core however many threads it has.

How they share:
- **The port**: every worker binds the same TCP port with ``SO_REUSEPORT`` and the kernel
  spreads new connections over them. The supervisor binds the port first (without listening)
  to learn it when asked for port 0 and to hold it while workers restart.
- **A call stays in one worker** from offer to hang-up: its peer connection, the DTLS/ICE UDP
  sockets, its tasks and its pipeline live in the worker that answered its offer.
- **Placement**: a worker that receives ``POST /offer`` (or a ``/ws`` offer) hands it to the
  least-loaded worker (itself on a tie) over that worker's private unix socket, so calls
  spread evenly rather than by the kernel's hash; the answer's ICE candidates are that
  worker's sockets, so the media goes straight there.
- **Routing by call id**: a worker's call ids start with its index (two hex digits), so
  ``/v1/calls/{id}/avatar`` reaching any worker is forwarded to the call's worker.
  ``WorkerGroup.forward`` is the one way to reach a chosen worker — the rooms worker uses it to
  put a participant on a worker of our choosing.
- **The budget** is the machine's: ``SharedAdmission`` (server/admission.py).
- **/metrics** aggregates: workers run prometheus_client in multiprocess mode (one directory of
  memory-mapped value files, collected by whichever worker answers the scrape).
- **SIGTERM** (or SIGINT) to the supervisor stops every worker — each closes its peers — and
  the supervisor exits 0. A worker that dies is restarted (its calls died with it; its
  budget slot is cleared first); one that keeps dying at start-up is given up on.

The private sockets live in a 0700 directory made for this run; requests arriving over them
are the only ones a worker serves without placing them elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .admission import clear_slot, create_table

log = logging.getLogger("speech2face.workers")

WORKER_ENV = "_S2F_WORKER"  # "<run dir>:<index>:<count>", set by the supervisor only
SUPERVISOR_ENV = "_S2F_SUPERVISOR"  # its pid
ROOM_SECRET_ENV = "S2F_ROOM_SECRET"
JANUS_SECRET_ENV = "S2F_JANUS_API_SECRET"
JANUS_ADMIN_ENV = "S2F_JANUS_ADMIN_KEY"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CLIENT_HEADER = "X-Forwarded-For"  # the caller's address, on a request one worker hands another
START_TIMEOUT = 180.0  # engine load on a busy machine
STOP_TIMEOUT = 15.0
RESTART_GIVE_UP = 3  # consecutive deaths within FAST_DEATH seconds of starting
FAST_DEATH = 20.0


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class WorkerGroup:
    """This process's place in the group, and the way to the other workers."""

    run_dir: Path
    index: int
    count: int

    @staticmethod
    def from_env(environ: Mapping[str, str] | None = None) -> "WorkerGroup | None":
        raw = (os.environ if environ is None else environ).get(WORKER_ENV)
        if not raw:
            return None
        run_dir, index, count = raw.rsplit(":", 2)
        return WorkerGroup(Path(run_dir), int(index), int(count))

    @property
    def admission_path(self) -> Path:
        return self.run_dir / "admission"

    def socket_path(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.sock"

    def new_call_id(self) -> str:
        return f"{self.index:02x}{uuid.uuid4().hex[:12]}"

    def owner_of(self, call_id: str) -> int | None:
        """The worker holding a call, from its id (None: not one of this group's ids)."""
        if len(call_id) != 14:
            return None
        try:
            index = int(call_id[:2], 16)
        except ValueError:
            return None
        return index if index < self.count else None

    async def forward(
        self,
        index: int,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        client: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request to worker ``index`` over its private socket: (status, headers, body).
        ``client``: the caller's address, which ``client_address`` gives the other worker.

        Raises ``ConnectionError`` when that worker is not there (restarting, or gone)."""
        import aiohttp

        send = {k: v for k, v in (headers or {}).items() if k.lower() in ("content-type", "accept")}
        if client:
            send[CLIENT_HEADER] = client
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket_path(index)))) as s:
                async with s.request(method, "http://worker" + path, data=body, headers=send) as r:
                    keep = ("Content-Type", "Retry-After", "Content-Disposition")
                    return r.status, {k: r.headers[k] for k in keep if k in r.headers}, await r.read()
        except (aiohttp.ClientConnectionError, FileNotFoundError) as exc:
            raise ConnectionError(f"worker {index} is not reachable") from exc

    async def relay_websocket(self, index: int, path: str, ws: Any, client: str | None, max_msg_size: int) -> None:
        """Carry an accepted websocket's messages to and from worker ``index``'s ``path`` until
        either side closes (a room member placed on another worker: its signalling goes there,
        its media straight to that worker's ICE candidates).

        Raises ``ConnectionError`` when that worker is not there."""
        import aiohttp

        headers = {CLIENT_HEADER: client} if client else {}
        try:
            session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket_path(index))))
        except FileNotFoundError as exc:
            raise ConnectionError(f"worker {index} is not reachable") from exc
        async with session:
            try:
                upstream = await session.ws_connect("http://worker" + path, headers=headers, max_msg_size=max_msg_size)
            except (aiohttp.ClientConnectionError, aiohttp.WSServerHandshakeError, FileNotFoundError) as exc:
                raise ConnectionError(f"worker {index} is not reachable") from exc

            async def pump(src: Any, dst: Any) -> None:
                async for msg in src:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await dst.send_str(msg.data)
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        await dst.send_bytes(msg.data)

            async with upstream:
                tasks = [asyncio.ensure_future(pump(ws, upstream)), asyncio.ensure_future(pump(upstream, ws))]
                try:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)


def die_with_supervisor() -> None:
    """Linux: SIGTERM this worker when the supervisor dies, even by SIGKILL (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: SIGTERM to the supervisor still stops all
        pass
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and os.getppid() != int(supervisor):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def came_from_worker(request: Any) -> bool:
    """Did this request arrive over our private unix socket (another worker sent it)?"""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return isinstance(sockname, str) and bool(sockname)


def client_address(request: Any) -> str | None:
    """The caller's address, also for a request another worker handed over (only then is the
    forwarding header believed)."""
    if came_from_worker(request):
        return request.headers.get(CLIENT_HEADER)
    return request.remote


# ----------------------------------------------------------------------------- supervisor
def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) with SO_REUSEPORT: learns the port for port 0, and fails clearly when
    another program holds it; the workers then bind the same port beside it."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock


class Supervisor:
    """Starts the workers, restarts a dead one, stops them all on SIGTERM/SIGINT."""

    def __init__(self, argv: Sequence[str], host: str, port: int, workers: int, janus: str = "off") -> None:
        self.argv = list(argv)
        self.janus = janus
        self.host = host
        self.workers = workers
        self.run_dir = Path(tempfile.mkdtemp(prefix="speech2face-"))
        os.chmod(self.run_dir, 0o700)
        (self.run_dir / "metrics").mkdir()
        create_table(self.run_dir / "admission", workers)
        self._reserved = reserve_port(host, port)
        self.port = self._reserved.getsockname()[1]
        # rooms must salt faces alike in every worker: a generated secret is made once, here
        self.room_secret = os.environ.get(ROOM_SECRET_ENV) or secrets.token_hex(32)
        if not os.environ.get(ROOM_SECRET_ENV):
            log.warning("S2F_ROOM_SECRET is not set: using a random room secret for this run (room faces change on restart)")
        # the secrets every worker must agree on to share worker 0's Janus (made once, here)
        self.janus_secrets = (
            {name: os.environ.get(name) or secrets.token_hex(24) for name in (JANUS_SECRET_ENV, JANUS_ADMIN_ENV)}
            if janus == "auto"
            else {}
        )
        self.procs: list[subprocess.Popen | None] = [None] * workers
        self._started_at = [0.0] * workers
        self._fast_deaths = [0] * workers
        self._stopping = False

    def _spawn(self, index: int) -> None:
        group = WorkerGroup(self.run_dir, index, self.workers)
        group.socket_path(index).unlink(missing_ok=True)
        env = dict(
            os.environ,
            **{
                WORKER_ENV: f"{self.run_dir}:{index}:{self.workers}",
                SUPERVISOR_ENV: str(os.getpid()),
                ROOM_SECRET_ENV: self.room_secret,
                MULTIPROC_ENV: str(self.run_dir / "metrics"),
            },
        )
        env.update(self.janus_secrets)
        cmd = [sys.executable, "-m", "server.serve", *self.argv, *self._janus_flags(index), "--port", str(self.port)]
        self.procs[index] = subprocess.Popen(cmd, env=env, cwd=os.getcwd())
        self._started_at[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, self.procs[index].pid)

    def _janus_flags(self, index: int) -> list[str]:
        """One Janus for the machine: worker 0 supervises it, the others use its API socket.

        Flags come after the user's, so they win; a Janus the user named (or ``off``) is left alone.
        """
        if self.janus != "auto":
            return []
        sock = str(self.run_dir / "janus.sock")
        return ["--janus-socket", sock] if index == 0 else ["--janus", "unix:" + sock]

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            for i in range(self.workers):
                self._spawn(i)
            if not self._wait_ready():
                return 1
            print(f"speech2face: {self.workers} workers serving on http://{self.host}:{self.port}/", flush=True)
            while not self._stopping:
                time.sleep(0.2)
                if not self._reap():
                    return 1
            log.info("shutting down: stopping %d workers", self.workers)
            return 0
        finally:
            self._stop_all()
            self._reserved.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _wait_ready(self) -> bool:
        group = WorkerGroup(self.run_dir, 0, self.workers)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(group.socket_path(i).exists() for i in range(self.workers)):
            if self._stopping:
                return True  # asked to stop while starting: a clean stop
            if any(p is not None and p.poll() is not None for p in self.procs):
                log.error("a worker exited during start-up")
                return False
            if time.monotonic() > deadline:
                log.error("workers not ready within %.0f s", START_TIMEOUT)
                return False
            time.sleep(0.1)
        return True

    def _reap(self) -> bool:
        """Restart dead workers; False when one keeps dying (the service cannot run)."""
        for i, proc in enumerate(self.procs):
            if proc is None or proc.poll() is None:
                continue
            alive_for = time.monotonic() - self._started_at[i]
            log.error("worker %d (pid %d) exited with %s after %.0f s; restarting it", i, proc.pid, proc.returncode, alive_for)
            self._fast_deaths[i] = self._fast_deaths[i] + 1 if alive_for < FAST_DEATH else 0
            if self._fast_deaths[i] >= RESTART_GIVE_UP:
                log.error("worker %d keeps dying at start-up; stopping", i)
                return False
            self._forget(i, proc.pid)
            self._spawn(i)
        return True

    def _forget(self, index: int, pid: int) -> None:
        clear_slot(self.run_dir / "admission", index)
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self.run_dir / "metrics"))
        except Exception:  # metrics of a dead worker are a nicety, never a reason to stop
            log.debug("could not mark worker %d dead for metrics", index, exc_info=True)

    def _stop_all(self) -> None:
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %.0f s; killing it", p.pid, STOP_TIMEOUT)
                p.kill()
                p.wait()


def supervise(argv: Sequence[str], host: str, port: int, workers: int, janus: str = "off") -> int:
    try:
        sup = Supervisor(argv, host, port, workers, janus)
    except OSError as exc:
        print(f"speech2face: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return sup.run()
