"""Ray for the engines: importing it lazily, connecting with a deadline and errors that say what
is wrong (nothing listening, unreachable, not a Ray cluster, authentication refused), keeping
Ray's own logging quiet unless asked, and a pool of stateful actors fed from a stream of tasks
(`ActorPool`), shared by the embedding and alignment engines."""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

from protiso.errors import ProtisoError

ENGINES = ("local", "ray")
DEFAULT_TIMEOUT = 60.0       # seconds to reach a cluster


class RayUnavailableError(ProtisoError):
    """The ray engine without Ray installed."""


class ClusterError(ProtisoError):
    """The Ray cluster cannot be reached or used (the message says why)."""


def require_ray():
    """The `ray` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"the ray engine needs Ray, which is not installed ({exc}); "
            "install it with: pip install 'protiso[ray]'  (or: pip install 'ray>=2.9')") from None
    return ray


def quiet(verbose: bool = False) -> None:
    """Ray's Python and C++ logs at ERROR unless `verbose` (set before Ray starts logging)."""
    level = logging.INFO if verbose else logging.ERROR
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _muted(mute: bool):
    """Ray's C++ layer writes to file descriptor 2 directly: send it to /dev/null meanwhile."""
    if not mute:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: 'HOST:PORT' or 'ray://HOST:PORT', or None for a new local cluster.
    None means $RAY_ADDRESS if set; 'auto' the cluster this machine's `ray start` recorded."""
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip() or None
    if address in (None, "local"):
        return None
    if address.startswith("ray://"):
        _split(address[len("ray://"):])
        return address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:           # Ray moved it: let ray.init resolve 'auto' itself
            return "auto"
        try:
            found = canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as exc:
            raise ClusterError("no running Ray cluster found on this machine for address 'auto' "
                               f"({str(exc).splitlines()[0]}); start one with `ray start --head`, or give the "
                               "head's HOST:PORT") from None
        if not found:
            raise ClusterError("no running Ray cluster found on this machine for address 'auto'; start one "
                               "with `ray start --head`, or give the head's HOST:PORT")
        return found
    _split(address)
    return address


def _probe_tcp(host: str, port: int, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=max(0.1, timeout)):
            return
    except ConnectionRefusedError:
        raise ClusterError(f"nothing listens at {host}:{port} (connection refused): {what} is not running "
                           "(stopped or dead?)") from None
    except socket.gaierror as exc:
        raise ClusterError(f"cannot resolve the Ray head's host name {host!r}: {exc.strerror or exc}") from None
    except (TimeoutError, socket.timeout):
        raise ClusterError(f"{what} at {host}:{port} is unreachable: no answer within "
                           f"{time.monotonic() - t0:.0f} s") from None
    except OSError as exc:
        raise ClusterError(f"{what} at {host}:{port} is unreachable: {exc.strerror or exc}") from None


def _probe_gcs(ray, address: str, timeout: float) -> None:
    """Ask the cluster's GCS for its id (what ray.init does first), bounded by `timeout`."""
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return
    outcome: dict = {}

    def ask() -> None:
        try:
            outcome["id"] = GcsClient(address=address, cluster_id=None).cluster_id
        except BaseException as exc:   # noqa: BLE001 - reported below
            outcome["error"] = exc

    thread = threading.Thread(target=ask, daemon=True, name="protiso-ray-probe")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ClusterError(f"{address} accepts connections but no Ray cluster answered within {timeout:.0f} s "
                           "(a head still starting, overloaded, or another service on that port)")
    exc = outcome.get("error")
    if exc is None:
        return
    if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
        mode = os.environ.get("RAY_AUTH_MODE", "")
        fix = ("give the cluster's token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
               if mode.lower() == "token" else
               f"this client does not send one (RAY_AUTH_MODE={mode or 'unset'}): set RAY_AUTH_MODE=token and "
               "give the cluster's token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
        raise ClusterError(f"the Ray cluster at {address} refused this client's authentication: {fix}") from None
    raise ClusterError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def check_address(address: str | None, timeout: float = DEFAULT_TIMEOUT, verbose: bool = False) -> str | None:
    """Resolve `address` and check within `timeout` seconds that a Ray cluster answers there;
    ClusterError says what is wrong. Returns the address for ray.init (None: start a local one)."""
    if timeout <= 0:
        raise ClusterError(f"connection timeout must be positive, got {timeout}")
    ray = require_ray()
    resolved = resolve_address(address)
    if resolved is None or resolved == "auto":
        return resolved
    client = resolved.startswith("ray://")
    host, port = _split(resolved[len("ray://"):] if client else resolved)
    what = "the Ray client server" if client else "the Ray cluster"
    if address in (None, "auto") or not address:
        what += f" recorded by {'$RAY_ADDRESS' if os.environ.get('RAY_ADDRESS') and not address else 'ray start'}"
    deadline = time.monotonic() + timeout
    _probe_tcp(host, port, timeout, what)
    if not client:
        with _muted(not verbose):
            _probe_gcs(ray, f"{host}:{port}", max(0.5, deadline - time.monotonic()))
    return resolved


def connect(address: str | None = None, timeout: float = DEFAULT_TIMEOUT, verbose: bool = False):
    """Connect to a Ray cluster once per process (an already initialised Ray is used as is):
    `address` 'auto' (the cluster `ray start` recorded here), 'HOST:PORT', 'ray://HOST:PORT'
    (Ray Client), or None ($RAY_ADDRESS if set, else a new local cluster). The cluster must answer
    within `timeout` seconds. Ray's logging stays quiet unless `verbose`."""
    ray = require_ray()
    quiet(verbose)
    if ray.is_initialized():
        return ray
    target = check_address(address, timeout, verbose)
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=verbose,
                                  logging_level=logging.INFO if verbose else logging.ERROR)
    try:
        with _muted(not verbose):
            ray.init(address=target, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {target or 'a new local cluster'}: "
                           f"{_first_line(exc)}") from None
    except Exception as exc:   # noqa: BLE001 - e.g. ray.exceptions.AuthenticationError
        raise ClusterError(f"cannot connect to the Ray cluster at {target or 'a new local cluster'}: "
                           f"{_first_line(exc)}") from None
    quiet(verbose)        # ray.init re-configures its loggers
    return ray


def unwrap(exc: BaseException) -> BaseException:
    """The ProtisoError a Ray task/actor raised, found through Ray's wrappers; else a
    ProtisoError with the worker's last message line."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ProtisoError) and type(cur).__module__.startswith("protiso"):
            return cur
        cause = getattr(cur, "cause", None)
        if isinstance(cause, BaseException):
            cur = cause
            continue
        cur = cur.__cause__ or cur.__context__
    text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return ProtisoError(f"a Ray worker failed: {text[-1].strip() if text else type(exc).__name__}")


def resources(ray, gpus_per_worker: float | None, cpus_per_worker: float, workers: int | None
              ) -> tuple[float, float, int]:
    """(gpus, cpus, workers) per actor: GPUs default to 1 where the cluster has GPUs, workers to
    as many as the cluster's GPUs (or CPUs) hold. A worker the cluster cannot hold is an error."""
    total = ray.cluster_resources()
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if total.get("GPU", 0) > 0 else 0.0
    if gpus_per_worker < 0 or cpus_per_worker <= 0:
        raise ProtisoError(f"GPUs per worker must be >= 0 and CPUs per worker > 0, got {gpus_per_worker} "
                           f"and {cpus_per_worker}")
    if gpus_per_worker > total.get("GPU", 0) or cpus_per_worker > total.get("CPU", 0):
        raise ProtisoError(f"one worker asks for {gpus_per_worker:g} GPUs and {cpus_per_worker:g} CPUs, but the "
                           f"cluster has {total.get('GPU', 0):g} GPUs and {total.get('CPU', 0):g} CPUs")
    if workers is None:
        workers = int(total.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else \
            int(total.get("CPU", 1) // cpus_per_worker)
    if workers < 1:
        raise ProtisoError(f"workers must be >= 1, got {workers} (cluster resources: {dict(total)})")
    return gpus_per_worker, cpus_per_worker, workers


class _Host:
    """The Ray actor around one engine object: object references among the arguments are
    fetched (data shared by all actors), and construction errors are kept and raised by `ready()`
    (so the driver gets the original exception, not 'the actor died')."""

    def __init__(self, cls, args: tuple):
        self.obj, self.error = None, None
        try:
            import ray
            args = tuple(ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args)   # shared data
            self.obj = cls(*args)
        except Exception as exc:   # noqa: BLE001 - handed to the driver by ready()
            self.error = exc

    def ready(self) -> str:
        if self.error is not None:
            raise self.error
        return socket.gethostname()

    def call(self, *args):
        return self.obj(*args)


class ActorPool:
    """`workers` actors of `cls(*args)` (one model load each) fed from a stream of tasks: each
    ready actor holds at most `depth` tasks, so the driver pulls tasks only as fast as the cluster
    takes them (bounded memory, the first task starts as soon as an actor is up). An actor that
    dies (node lost, OOM kill) is replaced and its tasks go to others, each at most `retries`
    times; an exception raised by the task's code stops the run with that exception."""

    def __init__(self, ray, cls, args: tuple, workers: int, cpus: float, gpus: float = 0.0, depth: int = 2,
                 retries: int = 2):
        self.ray, self.workers, self.depth, self.retries = ray, workers, depth, retries
        self._remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(_Host)
        self._args = (cls, args)
        self.replaced = 0
        self.started = time.perf_counter()
        self.first_ready: float | None = None

    def _start(self):
        actor = self._remote.remote(*self._args)
        return actor, actor.ready.remote()

    def run(self, tasks: Iterable[tuple[Any, tuple]], on_result: Callable[[Any, Any], None]) -> None:
        """Run every (key, args) of `tasks` on the actors; `on_result(key, result)` in the driver as
        each finishes (in completion order). Actors start with the first task."""
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError
        lost = (RayActorError, WorkerCrashedError)
        source = iter(tasks)
        retry: deque = deque()
        starting: dict = {}                 # ready ref -> actor
        load: dict = {}                     # actor -> tasks in flight
        inflight: dict = {}                 # task ref -> (actor, key, args, attempts)
        exhausted = False
        for first in source:                # no actor (and no model load) without a task
            retry.append((*first, 0))
            break
        else:
            return
        for _ in range(self.workers):
            actor, ref = self._start()
            starting[ref] = actor
        try:
            while True:
                for actor in list(load):
                    while load[actor] < self.depth:
                        if retry:
                            key, args, attempts = retry.popleft()
                        elif not exhausted:
                            try:
                                key, args = next(source)
                            except StopIteration:
                                exhausted = True
                                break
                            attempts = 0
                        else:
                            break
                        inflight[actor.call.remote(*args)] = (actor, key, args, attempts)
                        load[actor] += 1
                if exhausted and not retry and not inflight:
                    return
                if not load and not starting:
                    raise ClusterError("every Ray worker was lost before the work was done")
                refs = list(inflight) + list(starting)
                done, _ = ray.wait(refs, num_returns=1)
                ref = done[0]
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except RayTaskError as exc:
                        raise unwrap(exc) from None
                    except lost:
                        self._replace(starting)
                        continue
                    if self.first_ready is None:
                        self.first_ready = time.perf_counter() - self.started
                    load[actor] = 0
                    continue
                actor, key, args, attempts = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except RayTaskError as exc:
                    raise unwrap(exc) from None
                except lost as exc:
                    if attempts >= self.retries:
                        raise ClusterError(f"a task failed {attempts + 1} times because its Ray worker was lost: "
                                           f"{_first_line(exc)}") from None
                    retry.append((key, args, attempts + 1))
                    if actor in load:
                        del load[actor]
                        ray.kill(actor)
                        self._replace(starting)
                    continue
                if actor in load:
                    load[actor] -= 1
                on_result(key, result)
        finally:
            for actor in list(load) + list(starting.values()):
                try:
                    ray.kill(actor)
                except Exception:   # noqa: BLE001 - already gone
                    pass

    def _replace(self, starting: dict) -> None:
        if self.replaced < self.workers:
            self.replaced += 1
            actor, ref = self._start()
            starting[ref] = actor
