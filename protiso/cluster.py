"""Importing and connecting to Ray lazily, and turning worker failures into ProtisoErrors."""
from __future__ import annotations

from protiso.errors import ProtisoError

ENGINES = ("local", "ray")


class RayUnavailableError(ProtisoError):
    """The ray engine without Ray installed."""


def require_ray():
    """The `ray` module with Ray Data, or a clear error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(
            f"the ray engine needs Ray Data, which is not installed ({exc}); "
            "install it with: pip install 'protiso[ray]'  (or: pip install 'ray[data]>=2.9')") from None
    return ray


def connect(address: str | None = None):
    """Connect to a Ray cluster once per process: `address` 'auto' (a running cluster),
    'ray://HOST:PORT' (Ray Client), or None ($RAY_ADDRESS if set, else a local cluster;
    an already initialised Ray is used as is)."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ProtisoError(f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: "
                               f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False        # the CLI draws its own
    return ray


def unwrap(exc: BaseException) -> BaseException:
    """The ProtisoError a Ray task/actor raised, found through Ray's wrappers; else a
    ProtisoError with the worker's first message line."""
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
    text = str(exc).strip().splitlines()
    return ProtisoError(f"a Ray worker failed: {text[-1] if text else type(exc).__name__}")


def resources(ray, gpus_per_worker: float | None, cpus_per_worker: float, workers: int | None
              ) -> tuple[float, float, int]:
    """(gpus, cpus, workers) per actor: GPUs default to 1 where the cluster has GPUs, workers to
    as many as the cluster's GPUs (or CPUs) hold."""
    total = ray.cluster_resources()
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if total.get("GPU", 0) > 0 else 0.0
    if gpus_per_worker < 0 or cpus_per_worker <= 0:
        raise ProtisoError("GPUs per worker must be >= 0 and CPUs per worker > 0")
    if workers is None:
        workers = int(total.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else \
            int(total.get("CPU", 1) // cpus_per_worker)
    if workers < 1:
        raise ProtisoError(f"workers must be >= 1 (cluster resources: {dict(total)})")
    return gpus_per_worker, cpus_per_worker, workers


def results(iterator):
    """Yield the batches of a Ray Data iterator; a worker's exception (which Ray wraps) is
    re-raised as the original error, e.g. a ProtisoError naming the bad input."""
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as exc:   # noqa: BLE001 - Ray wraps the worker's exception
            raise unwrap(exc) from None
        yield batch
