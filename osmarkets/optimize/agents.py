"""The optimisation pipeline on osBrain agents: Generator -> Backtesters -> Collector.

::

    driver (explore)            GeneratorAgent  --PUSH batches-->  BacktesterAgent x N
      | submit / status (Pyro)      ^   REP job                        | PUSH rows
      |                             |  PULL done                       v
      +-- progress / take --------  +-------------------------  CollectorAgent (Portfolio)

- The **Generator** holds the queue of configuration batches of the current *job* (one data
  set and its settings) and PUSHes them (PUSH/PULL: load balanced, never dropped like PUB/SUB)
  with at most ``window`` batches in flight. It answers job requests (REQ/REP) with the
  cloudpickled :class:`~osmarkets.optimize.evaluate.Evaluator` spec, so a Backtester that joins
  late, or from another machine, fetches what it needs.
- A **Backtester** evaluates each batch it pulls and PUSHes the rows to the Collector.
- The **Collector** (the Portfolio agent) keeps the rows by configuration id, so a
  configuration evaluated twice is counted once, and tells the Generator which batches are
  done. The driver then builds the portfolio from the collected rows.

Nothing is lost when a Backtester dies (even by SIGKILL): the Generator re-queues any batch
still unfinished ``requeue_after`` seconds after it was sent (default: five times the longest
batch seen so far, at least one second; a minute before the first batch completes). A slow
batch evaluated twice is harmless: the Collector de-duplicates.

Every handler is wrapped (osBrain stops an agent's loop when a handler raises), sockets bind
to ``host`` (127.0.0.1 unless told otherwise) over tcp, so there are no ipc files, and the name
server and every local agent are shut down in :meth:`AgentRunner.close`.

Security (:mod:`osmarkets.agents.auth`): each :class:`AgentRunner` generates the keys of its
optimisation (:class:`~osmarkets.agents.auth.DeploymentKeys`) when it starts.

- *Control plane* (Pyro: the driver's calls, the name server, ``osmarkets worker`` joining):
  every daemon, the name server's included, checks the HMAC of each message against the
  optimisation's key before deserialising it, so a process without the key cannot call
  anything (it gets a Pyro ``CommunicationError``/``SecurityError`` naming the HMAC).
- *Data plane* (ZeroMQ over tcp): every socket is CURVE (encrypted; a bound socket is a CURVE
  server whose ZAP handler admits only the optimisation's public key and counts the peers it
  refused, ``osm_stats()['refused_peers']``). Batches of configurations, job requests, done
  messages and result rows are schema'd MessagePack (:mod:`osmarkets.optimize.messages`):
  a message that does not decode is dropped, logged and counted (``osm_stats()['malformed']``),
  and the agent keeps running. Nothing on these sockets is unpickled, except:
- *the job spec* (your Brain class, by value, the data and the settings): code has to travel
  for a worker to run your class, so it is a cloudpickle. It travels only on the Generator's
  REQ/REP ``job`` socket, in reply to a Backtester's request, over the CURVE-authenticated
  connection: only to peers holding the optimisation's secret key, and a Backtester unpickles
  only what a server holding that key sent.

Remote workers (``osmarkets worker --key-file PATH``) therefore need the key file
(:meth:`AgentRunner.write_key_file`, ``osmarkets optimize --key-file PATH``, mode 0600): whoever
holds it can join the optimisation, send it results and receive your Brain class and data, and
the optimisation sends a worker code that the worker runs. Copy it only to machines you trust,
over a secure channel (scp). The Pyro control plane is authenticated, not encrypted: on an
untrusted network, its calls (configurations, addresses) can be read; the job spec and the
rows travel only over the encrypted CURVE links.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import osbrain
import Pyro4
import Pyro4.errors
import zmq
from osbrain.address import SocketAddress

from .. import wire
from ..agents.auth import DeploymentKeys, pyro_key, write_key_file
from ..agents.base import OsmAgent, OsmAgentProcess, start_nameserver
from ..agents.proxy import AgentProxy
from . import messages
from .evaluate import Evaluator
from .space import Config

GENERATOR = "osm-opt-generator"
COLLECTOR = "osm-opt-collector"
FIRST_TIMEOUT = 60.0  # seconds before re-queueing when no batch has completed yet
MIN_TIMEOUT = 1.0

_BATCH = wire.Decoder(messages.BACKTESTER_CONFIGS)
_JOB_REQUEST = wire.Decoder(messages.GENERATOR_JOB)
_DONE = wire.Decoder(messages.GENERATOR_DONE)
_RESULTS = wire.Decoder(messages.COLLECTOR_RESULTS)
_JOB_SPEC = messages.JobSpecDecoder()


def _connect_raw(agent: osbrain.Agent, server: Any, alias: str, handler: Any) -> Any:
    """Connect with the raw serializer: handlers get bytes and decode them in a guard."""
    from osbrain.address import AgentAddress

    if isinstance(server, AgentAddress) and server.serializer != "raw":
        server = AgentAddress(server.transport, server.address, server.kind, server.role, "raw")
    return osbrain.Agent.connect(agent, server, alias=alias, handler=handler)


class _Agent(OsmAgent):
    def shutdown(self) -> None:
        # osBrain's timer threads raise (and print) if they fire after the loop stopped
        with contextlib.suppress(Exception):
            self.stop_all_timers()
        super().shutdown()

    def osm_bind_limited(self, kind: str, alias: str, handler: Any = None) -> Any:
        """Bind ``alias``; ZeroMQ drops a peer that sends a message over the codec's limit."""
        address = self.osm_bind(kind, alias, handler=handler)
        self._socket[alias].setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        return address


class GeneratorAgent(_Agent):
    """Queues batches, PUSHes them to Backtesters, re-queues the unfinished ones."""

    def osm_setup(self) -> None:
        self.queue: deque[tuple[int, int, list[Config]]] = deque()
        self.inflight: dict[tuple[int, int], tuple[float, list[Config]]] = {}
        self.finished: set[tuple[int, int]] = set()
        self.jobs: dict[int, bytes] = {}
        self.workers: set[str] = set()
        self.slowest = 0.0
        self.requeued = 0
        self.requeue_after = self.osm_cfg.get("requeue_after")
        self.window = int(self.osm_cfg.get("window") or 0)
        self.osm_bind_limited("PUSH", "configs")
        self._socket["configs"].setsockopt(zmq.SNDHWM, 4)
        self.osm_bind_limited("PULL", "done", handler=GeneratorAgent.on_done)
        self.osm_bind_limited("REP", "job", handler=GeneratorAgent.on_job)

    def before_loop(self) -> None:
        super().before_loop()
        self.each(0.2, "check")

    # -- driver calls (Pyro) --------------------------------------------------------------------
    def addresses(self) -> dict[str, Any]:
        return {"configs": self.addr("configs"), "job": self.addr("job"),
                "results": self.osm_cfg.get("results")}  # fmt: skip

    def set_results(self, address: Any) -> None:
        self.osm_cfg["results"] = address

    def set_job(self, job: int, blob: bytes) -> None:
        self.jobs = {job: blob}  # older jobs are finished: free their data

    def submit(self, job: int, batches: list[tuple[int, list[Config]]]) -> int:
        self.queue.extend((job, number, configs) for number, configs in batches)
        self.pump()
        return len(self.queue)

    def status(self) -> dict[str, Any]:
        return {"queued": len(self.queue), "inflight": len(self.inflight),
                "workers": sorted(self.workers), "requeued": self.requeued}  # fmt: skip

    # -- handlers ---------------------------------------------------------------------------------
    def on_done(self, data: bytes) -> None:
        self.osm_guard("done", self._done, data)

    def _done(self, data: bytes) -> None:
        message = self.osm_decode(data, _DONE)
        if message is None:
            return
        self.osm_received += 1
        _, job, number, elapsed = message
        key = (job, number)
        if key not in self.inflight and job not in self.jobs:
            return  # a late acknowledgement of an older job
        self.inflight.pop(key, None)
        self.finished.add(key)
        self.slowest = max(self.slowest, float(elapsed))
        self.pump()

    def on_job(self, data: bytes) -> bytes:
        """REP ``job``: the spec of the requested job (a cloudpickle, to CURVE-authenticated
        peers only: the socket admits no other), or ``None`` for an unknown job. Every request
        gets a reply (REQ/REP is lock-step)."""
        reply = self.osm_guard("job request", self._job_reply, data)
        return reply if reply is not None else wire.encode(("job", -1, None))

    def _job_reply(self, data: bytes) -> bytes:
        message = self.osm_decode(data, _JOB_REQUEST)
        if message is None:
            return wire.encode(("job", -1, None))
        _, job, worker = message
        self.workers.add(worker[:200])
        return wire.encode(("job", job, self.jobs.get(job)))

    def check(self) -> None:
        """Timer: re-queue batches in flight for too long (a dead or vanished Backtester)."""
        limit = self._timeout()
        now = time.monotonic()
        late = [key for key, (sent, _) in self.inflight.items() if now - sent > limit]
        for key in late:
            _, configs = self.inflight.pop(key)
            self.queue.appendleft((key[0], key[1], configs))
            self.requeued += 1
            self.log_warning(f"re-queued batch {key} after {limit:.1f} s")
        self.pump()

    def _timeout(self) -> float:
        if self.requeue_after:
            return float(self.requeue_after)
        if self.slowest <= 0:
            return FIRST_TIMEOUT
        return max(MIN_TIMEOUT, 5.0 * self.slowest)

    def pump(self) -> None:
        """Send queued batches while fewer than ``window`` are in flight."""
        window = self.window or max(4, 2 * len(self.workers) + 2)
        socket = self._socket["configs"]
        while self.queue and len(self.inflight) < window:
            job, number, configs = self.queue[0]
            if (job, number) in self.finished or job not in self.jobs:
                self.queue.popleft()
                continue
            try:
                socket.send(messages.encode_batch(job, number, configs), zmq.NOBLOCK)
            except zmq.Again:
                return  # no Backtester connected yet, or all busy: try again later
            self.queue.popleft()
            self.inflight[(job, number)] = (time.monotonic(), configs)
            self.osm_sent += 1


class BacktesterAgent(_Agent):
    """Evaluates the batches it pulls; fetches each job's data and settings once."""

    def osm_setup(self) -> None:
        cfg = self.osm_cfg
        self.job_id: int | None = None
        self.evaluator: Evaluator | None = None
        self.batches = 0
        self.connect(cfg["configs"], alias="configs", handler=BacktesterAgent.on_batch)
        self.connect(cfg["results"], alias="results")
        self.connect(cfg["job"], alias="job")
        self._socket["job"].setsockopt(zmq.RCVTIMEO, 30_000)
        self._socket["job"].setsockopt(zmq.LINGER, 0)

    def connect(self, server: Any, alias: str, handler: Any = None) -> Any:
        return _connect_raw(self, server, alias, handler)

    def on_batch(self, data: bytes) -> None:
        self.osm_guard("batch", self._batch, data)

    def _batch(self, data: bytes) -> None:
        message = self.osm_decode(data, _BATCH)
        if message is None:
            return
        _, job, number, configs = message
        self.osm_received += 1
        started = time.perf_counter()
        try:
            if job != self.job_id:
                self._fetch(job)
            assert self.evaluator is not None
            rows = self.evaluator.evaluate(configs)
            for row in rows:
                row["worker"] = self.name
            reply = messages.encode_rows(job, number, rows, time.perf_counter() - started)
        except Exception:
            text = traceback.format_exc()
            reply = wire.encode(("error", job, number, self.name, text[-20_000:]))
        self._socket["results"].send(reply)
        self.batches += 1
        self.osm_sent += 1

    def _fetch(self, job: int) -> None:
        """The job's spec from the Generator's REQ/REP ``job`` socket. It is the one cloudpickle
        of the pipeline (the Brain class travels by value): this socket is a CURVE client that
        verified the server holds the optimisation's secret key."""
        socket = self._socket["job"]
        socket.send(wire.encode(("job_request", job, self.name)))
        try:
            got, spec = _JOB_SPEC(socket.recv())
        except wire.WireError as exc:
            self.osm_bad(f"job reply ({exc})")
            raise RuntimeError(f"job {job}: malformed reply from the generator") from None
        if got != job or spec is None:
            raise RuntimeError(f"job {job} is not available from the generator")
        self.evaluator = Evaluator.from_spec(cloudpickle.loads(spec))
        self.job_id = job


class CollectorAgent(_Agent):
    """Collects rows by configuration id (the Portfolio agent) and acknowledges batches."""

    def osm_setup(self) -> None:
        self.rows: dict[int, dict[str, dict]] = {}
        self.errors: list[str] = []
        self.duplicates = 0
        self.osm_bind_limited("PULL", "results", handler=CollectorAgent.on_rows)
        self.connect(self.osm_cfg["done"], alias="done")

    def on_rows(self, data: bytes) -> None:
        self.osm_guard("rows", self._rows, data)

    def _rows(self, data: bytes) -> None:
        message = self.osm_decode(data, _RESULTS)
        if message is None:
            return
        self.osm_received += 1
        if message[0] == "error":
            _, job, number, worker, text = message
            self.errors.append(f"{worker}, batch {number}:\n{text}")
            return
        _, job, number, rows, elapsed = message
        store = self.rows.setdefault(job, {})
        for row in rows:
            if row.id in store:
                self.duplicates += 1
            else:
                store[row.id] = row.to_dict()
        self._socket["done"].send(wire.encode(("done", job, number, elapsed)))

    def connect(self, server: Any, alias: str, handler: Any = None) -> Any:
        return _connect_raw(self, server, alias, handler)

    def progress(self, job: int) -> dict[str, Any]:
        return {"done": len(self.rows.get(job, {})), "errors": list(self.errors[:1]),
                "duplicates": self.duplicates}  # fmt: skip

    def take(self, job: int) -> list[dict]:
        """The rows of ``job``; rows of older jobs (late duplicates) are dropped too."""
        rows = list(self.rows.pop(job, {}).values())
        self.rows = {k: v for k, v in self.rows.items() if k > job}
        return rows


def _kill(process: Any) -> None:
    if process is None or not getattr(process, "pid", None):
        return
    if process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    process.join(5)


def _pickle_by_value_if_needed(cls: type) -> None:
    """A Brain class from a module a remote worker cannot import by name (``__main__``, a file
    loaded by ``osmarkets optimize``) travels by value."""
    import importlib.util

    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__ == "__main__":
        return  # cloudpickle already pickles __main__ by value
    try:
        importable = importlib.util.find_spec(cls.__module__) is not None
    except (ImportError, ValueError):
        importable = False
    if not importable:
        cloudpickle.register_pickle_by_value(module)


def start_agent(
    name: str, cls: type, nsaddr: Any, host: str, cfg: dict[str, Any], keys: DeploymentKeys
) -> Any:
    """Start one agent process holding the optimisation's ``keys`` (its Pyro daemon and
    proxies authenticate with the HMAC key; its tcp sockets are CURVE); returns (process,
    proxy), the proxy authenticated with the key too."""
    cfg = {**cfg, "keys": keys, "transport": "tcp"}
    process = OsmAgentProcess(name=name, nsaddr=nsaddr, addr=host, base=cls, transport="tcp",
                              attributes={"osm_cfg": cfg}, pyro_key=keys.pyro)  # fmt: skip
    process.start()
    with pyro_key(keys.pyro):
        proxy = AgentProxy(name, nsaddr, timeout=20.0)
    proxy.run()
    proxy.wait_for_running(timeout=20.0)
    return process, proxy


def save_keys(path: str | os.PathLike[str], keys: DeploymentKeys) -> Path:
    """Write ``keys`` to ``path`` for ``osmarkets worker --key-file``: a new file of mode 0600
    replaces whatever was there (an existing file readable by others is not reused)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        write_key_file(temporary, keys)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return path


class AgentRunner:
    """Runs configurations through the agent pipeline (``workers`` local Backtesters, plus
    any started by ``osmarkets worker --nameserver`` on other machines).

    ``host``: address the name server and sockets bind to; ``port``: the name server's port
    (random if None; fix it so remote workers know where to join). ``evaluator``: the first
    job (or give it later with :meth:`set_evaluator`; ``explore(runner=...)`` does).
    ``stall_timeout``: raise when no configuration completes for that long (no worker
    alive). ``key_file``: write this optimisation's keys there (mode 0600, also later with
    :meth:`write_key_file`) for remote workers (``osmarkets worker --key-file``); the keys
    (:attr:`keys`) are generated here, one set per runner."""

    def __init__(
        self,
        evaluator: Evaluator | None = None,
        *,
        workers: int = 2,
        batch: int = 16,
        host: str = "127.0.0.1",
        port: int | None = None,
        requeue_after: float | None = None,
        window: int | None = None,
        stall_timeout: float = 600.0,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers: expected >= 0, got {workers}")
        self.keys = DeploymentKeys.generate()
        self.batch = max(1, int(batch))
        self.host = host
        self.stall_timeout = stall_timeout
        self.processes: dict[str, Any] = {}
        self.proxies: dict[str, Any] = {}
        self._job = 0
        self._batches = itertools.count()
        self._closed = False
        self.nameserver: Any = None
        common = {"transport": "tcp", "host": host, "parent_pid": os.getpid()}
        try:
            if key_file is not None:
                self.write_key_file(key_file)
            self.nameserver = start_nameserver(host, port, hmac_key=self.keys.pyro)
            self.nsaddr = self.nameserver.addr
            gen_cfg = {**common, "requeue_after": requeue_after, "window": window}
            self._start(GENERATOR, GeneratorAgent, gen_cfg)
            generator = self.proxies[GENERATOR]
            done = generator.addr("done")
            self._start(COLLECTOR, CollectorAgent, {**common, "done": done})
            generator.set_results(self.proxies[COLLECTOR].addr("results"))
            self.addresses = generator.addresses()
            if evaluator is not None:
                self.set_evaluator(evaluator)
            for number in range(workers):
                self.add_worker(f"osm-opt-backtester-{os.getpid()}-{number}")
        except BaseException:
            self.close()
            raise

    def _start(self, name: str, cls: type, cfg: dict[str, Any]) -> Any:
        process, proxy = start_agent(name, cls, self.nsaddr, self.host, cfg, self.keys)
        self.processes[name] = process
        self.proxies[name] = proxy
        return proxy

    def add_worker(self, name: str) -> Any:
        cfg = {"transport": "tcp", "host": self.host, "parent_pid": os.getpid(),
               **self.addresses}  # fmt: skip
        return self._start(name, BacktesterAgent, cfg)

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the name server, for ``osmarkets worker --nameserver``."""
        return f"{self.nsaddr.host}:{self.nsaddr.port}"

    def write_key_file(self, path: str | os.PathLike[str]) -> Path:
        """Write this optimisation's keys to ``path`` (mode 0600) for ``osmarkets worker
        --key-file``. Whoever holds them can join, receive your Brain class and data, and send
        results: copy the file only to machines you trust, over a secure channel."""
        return save_keys(path, self.keys)

    def proxy(self, name: str, timeout: float = 10.0) -> Any:
        """A new proxy to agent ``name``, authenticated with this optimisation's key."""
        with pyro_key(self.keys.pyro):
            return AgentProxy(name, self.nsaddr, timeout=timeout)

    def worker_pids(self) -> list[int]:
        return [p.pid for n, p in self.processes.items() if "backtester" in n]

    def set_evaluator(self, evaluator: Evaluator) -> None:
        """A new job: its data and settings, fetched by each Backtester on its first batch."""
        self._job += 1
        self.evaluator = evaluator
        _pickle_by_value_if_needed(evaluator.brain_class)
        blob = cloudpickle.dumps(evaluator.spec())
        self.proxies[GENERATOR].set_job(self._job, blob)

    def status(self) -> dict[str, Any]:
        status = dict(self.proxies[GENERATOR].status())
        status.update(self.proxies[COLLECTOR].progress(self._job))
        return status

    def run(self, configs: Sequence[Config], progress: Any = None) -> list[dict]:
        """Evaluate ``configs`` on the agents; returns one row per distinct configuration."""
        from .space import config_id

        if self._job == 0:
            raise RuntimeError("AgentRunner.run: no job yet (call set_evaluator first)")
        messages.check_configs(configs)
        job = self._job
        wanted = {config_id(c) for c in configs}
        batches = [(next(self._batches), list(configs[i : i + self.batch]))
                   for i in range(0, len(configs), self.batch)]  # fmt: skip
        generator, collector = self.proxies[GENERATOR], self.proxies[COLLECTOR]
        generator.submit(job, batches)
        last, last_change = -1, time.monotonic()
        while True:
            state = collector.progress(job)
            if state["errors"]:
                raise RuntimeError(f"a Backtester failed: {state['errors'][0]}")
            done = state["done"]
            if done != last:
                last, last_change = done, time.monotonic()
                if progress is not None:
                    progress(min(done, len(wanted)), len(wanted))
            if done >= len(wanted):
                break
            if time.monotonic() - last_change > self.stall_timeout:
                raise TimeoutError(
                    f"no configuration completed for {self.stall_timeout:g} s "
                    f"({done}/{len(wanted)} done): are any Backtesters alive?"
                )
            time.sleep(0.05)
        rows = collector.take(job)
        return [r for r in rows if r["id"] in wanted]

    def close(self) -> None:
        """Stop every local agent and the name server. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for name, proxy in self.proxies.items():
            process = self.processes.get(name)
            if process is not None and process.is_alive():
                with contextlib.suppress(Exception):
                    proxy._pyroTimeout = 2.0
                    proxy.oneway.shutdown()
        deadline = time.monotonic() + 5.0
        for process in self.processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            _kill(process)
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                proxy._pyroRelease()
        if self.nameserver is not None:
            server = self.nameserver
            with contextlib.suppress(Exception):
                server._shutdown_event.set()
            with contextlib.suppress(Exception):
                server.terminate()
            server.join(3)
            _kill(server)

    def __enter__(self) -> AgentRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class KeyRefused(PermissionError):
    """The optimisation's name server refused our Pyro HMAC key (not its keys)."""


def check_nameserver(address: SocketAddress, keys: DeploymentKeys, timeout: float = 10.0) -> None:
    """Ping the name server at ``address`` with ``keys``: :class:`KeyRefused` when it refuses
    the HMAC key, :class:`TimeoutError` when nothing answers."""
    deadline = time.monotonic() + timeout
    while True:
        probe = Pyro4.core.Proxy(f"PYRO:{Pyro4.constants.NAMESERVER_NAME}@"
                                 f"{address.host}:{address.port}")  # fmt: skip
        probe._pyroHmacKey = keys.pyro
        probe._pyroTimeout = max(1.0, min(5.0, timeout))
        try:
            probe.ping()
            return
        except Pyro4.errors.CommunicationError as exc:
            if "hmac" in str(exc).lower():
                raise KeyRefused(
                    f"the name server at {address.host}:{address.port} refused the key "
                    f"({exc}): the key file is not this optimisation's"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no name server answers at {address.host}:{address.port} "
                                   f"({exc})") from None  # fmt: skip
            time.sleep(0.2)
        finally:
            probe._pyroRelease()


def join(nsaddr: str, *, keys: DeploymentKeys, workers: int = 1, host: str = "127.0.0.1",
         poll: float = 1.0, stop: threading.Event | None = None) -> int:  # fmt: skip
    """Start ``workers`` Backtester agents here that join the optimisation whose name server is
    at ``nsaddr`` (``HOST:PORT``) and whose ``keys`` these are (``osmarkets worker
    --key-file``); return when that optimisation's name server goes away (or ``stop`` is set).
    Returns the number of batches evaluated here. Raises :class:`KeyRefused` when the keys are
    not that optimisation's."""
    if not isinstance(keys, DeploymentKeys):
        raise TypeError("join: keys: expected the optimisation's DeploymentKeys")
    address = SocketAddress(*split_nameserver(nsaddr))
    check_nameserver(address, keys)
    with pyro_key(keys.pyro):
        ns = osbrain.NSProxy(address, timeout=10.0)
        generator = ns.proxy(GENERATOR, timeout=10.0)
    addresses = generator.addresses()
    generator._pyroRelease()
    processes, proxies = [], []
    try:
        for number in range(workers):
            name = f"osm-opt-backtester-{os.uname().nodename}-{os.getpid()}-{number}"
            cfg = {"transport": "tcp", "host": host, "parent_pid": os.getpid(), **addresses}
            process, proxy = start_agent(name, BacktesterAgent, address, host, cfg, keys)
            processes.append(process)
            proxies.append(proxy)
        while not (stop is not None and stop.is_set()):
            try:
                ns.ping()
            except Exception:
                break
            if not any(p.is_alive() for p in processes):
                break
            time.sleep(poll)
        batches = 0
        for proxy in proxies:
            with contextlib.suppress(Exception):
                batches += int(proxy.get_attr("batches"))
        return batches
    finally:
        for proxy, process in zip(proxies, processes, strict=True):
            if process.is_alive():
                with contextlib.suppress(Exception):
                    proxy._pyroTimeout = 2.0
                    proxy.oneway.shutdown()
        for process in processes:
            process.join(3)
            _kill(process)
        with contextlib.suppress(Exception):
            ns._pyroRelease()


def split_nameserver(nsaddr: str) -> tuple[str, int]:
    host, sep, port = str(nsaddr).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"nameserver: expected HOST:PORT, got {nsaddr!r}")
    return host, int(port)


__all__ = [
    "AgentRunner", "BacktesterAgent", "CollectorAgent", "GeneratorAgent", "KeyRefused",
    "check_nameserver", "join", "save_keys", "start_agent",
]  # fmt: skip
