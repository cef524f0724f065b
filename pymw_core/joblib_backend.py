"""joblib on any PyMW interface: ``backend="pymw"`` for ``joblib.Parallel`` and scikit-learn.

joblib finds backends only by registration, so one call is needed before the name works::

    import joblib
    from pymw_core import joblib_backend

    joblib_backend.register()                      # the name "pymw", once per program
    with joblib.parallel_config(backend="pymw", interface="ssh", hosts=["node1", "node2"]):
        GridSearchCV(model, grid, n_jobs=-1).fit(X, y)

Each joblib batch is one PyMW task; a finished task wakes joblib through the master's
observer hooks (via :class:`pymw_core.PyMWExecutor`), so joblib's auto-batching sees
real batch durations. Install with ``pip install "pymw-core[joblib]"``; the range of
joblib versions tested is :data:`JOBLIB_TESTED` (joblib calls its backend API
experimental). See docs/joblib.md.
"""

from __future__ import annotations

import threading
import types
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

try:
    import joblib
except ImportError:
    raise ImportError(
        "pymw_core.joblib_backend needs joblib: pip install 'pymw-core[joblib]'"
    ) from None
from joblib.parallel import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)

from pymw_core.executor import PyMWExecutor
from pymw_core.master import Master

JOBLIB_TESTED = ">=1.3,<1.7"
"""The joblib versions this backend is tested with (the ``joblib`` extra pins the same)."""

NAME = "pymw"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


if _version(joblib.__version__) < (1, 3):
    raise ImportError(
        f"pymw_core.joblib_backend needs joblib 1.3 or newer (it has parallel_config); "
        f"joblib {joblib.__version__} is installed: pip install 'pymw-core[joblib]'"
    )
if _version(joblib.__version__) >= (1, 7):
    warnings.warn(
        f"pymw_core.joblib_backend is tested with joblib {JOBLIB_TESTED}, not "
        f"{joblib.__version__}: joblib's backend API is experimental and may have changed",
        stacklevel=2,
    )


def register(name: str = NAME, make_default: bool = False) -> None:
    """Make ``backend=name`` (default ``"pymw"``) select :class:`PyMWBackend` in joblib.

    joblib has no plugin discovery, so this is the one call a program makes; calling it
    again is harmless. ``make_default`` makes every ``joblib.Parallel`` use PyMW.
    """
    joblib.register_parallel_backend(name, PyMWBackend, make_default=make_default)


def worker_count(master: Master) -> int | None:
    """The workers ``master``'s interface reports (``get_status()["workers"]``), or None.

    ``local`` reports its processes and ``ssh`` its live remote workers; an interface
    without a fixed pool (``condor``) reports none.
    """
    workers = master.get_status().get("workers")
    if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        return workers
    return None


class PyMWBackend(AutoBatchingMixin, ParallelBackendBase):
    """A joblib backend that runs each batch of calls as a task of a PyMW :class:`Master`.

    ``interface`` and ``**master_options`` build the master (``Master(interface,
    **master_options)``: any interface name and its options, and the master's own
    settings such as ``max_attempts``), created at the first ``Parallel`` call and
    shared by every backend made with the same interface and options, as loky reuses
    its executor: ``Parallel(backend="pymw")`` makes a new backend each call, and
    starting workers each time would cost far more than short calls take. The shared
    master stays up until :meth:`close` or the end of the program. Or pass an
    existing ``master``: it is used as is and never closed here.

    ``n_jobs``: -1 (the default here, also for ``None``) means every worker the
    interface reports; ``-k`` means all but ``k - 1`` of them; a positive number is
    taken as given (more than the workers just queues). ``workers`` sets the count
    that -1 means, for interfaces that report none (``condor``); without either, it
    is this machine's CPU count. ``n_jobs=1`` runs the calls in this process, as
    joblib's own backends do.
    """

    default_n_jobs = -1
    supports_retrieve_callback = True
    supports_sharedmem = False
    uses_threads = False

    def __init__(
        self,
        interface: Any = None,
        *,
        master: Master | None = None,
        workers: int | None = None,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        **master_options: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        if master is not None and (interface is not None or master_options):
            raise ValueError(
                "give the pymw backend either an existing master or an interface and "
                "its options, not both"
            )
        if workers is not None and (
            not isinstance(workers, int) or isinstance(workers, bool) or workers < 1
        ):
            raise ValueError(f"workers must be a whole number of at least 1, not {workers!r}")
        self._interface = interface
        self._master_options = master_options
        self._workers = workers
        self._master = master
        self._owns_master = False
        self._executor: PyMWExecutor | None = None
        self._lock = threading.Lock()
        self._pending: set[Future] = set()
        self._known_workers: int | None = None

    def __repr__(self) -> str:
        where = self._master if self._master is not None else self._interface or "default"
        return f"<PyMWBackend {where!r}>"

    # -- the master ---------------------------------------------------------------------

    @property
    def master(self) -> Master:
        """The master this backend submits to (built on first use)."""
        return self._get_executor().master

    def _get_executor(self) -> PyMWExecutor:
        with self._lock:
            if self._executor is None:
                if self._master is None:
                    self._master = _shared_master(self._interface, self._master_options)
                    self._owns_master = True
                self._executor = _executor_for(self._master)
            return self._executor

    def close(self) -> None:
        """Close the master if this backend made it (a master passed in is left open).

        The master is shared with every backend of the same interface and options; the
        next ``Parallel`` call after this starts a new one.
        """
        with self._lock:
            if self._master is None:  # not used yet: the shared master of its settings
                master = _shared.get(_key(self._interface, self._master_options))
            else:
                master = self._master if self._owns_master else None
        if master is not None:
            master.close()

    # -- how many workers ---------------------------------------------------------------

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """``n_jobs`` in workers: negative counts back from the interface's worker count."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        if n_jobs > 0:
            return n_jobs
        return max(self._worker_total() + 1 + n_jobs, 1)

    def _worker_total(self) -> int:
        if self._workers is not None:
            return self._workers
        if self._known_workers is None:
            self._known_workers = worker_count(self.master) or joblib.cpu_count()
        return self._known_workers

    # -- a Parallel call ------------------------------------------------------------------

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: Any = None,
                  require: Any = None, **backend_kwargs: Any) -> int:
        """Start of a ``Parallel`` call: recount the workers, settle ``n_jobs``."""
        self._known_workers = None  # workers come and go between calls
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        self._get_executor()
        return n_jobs

    def compute_batch_size(self) -> int:
        """joblib's auto batching follows timings, so a program started again would batch
        its calls differently and find none of its tasks in the journal: with a journal,
        "auto" is one call per task (``Parallel(batch_size=N)`` fixes a larger size)."""
        if self._master is not None and self._master.journal is not None:
            return 1
        return super().compute_batch_size()

    def submit(self, func: Callable[[], Any], callback: Callable[[Any], None] | None = None
               ) -> Future:
        """Submit one batch as a task; ``callback(future)`` runs when it ends."""
        executor = self._get_executor()
        # Each batch is a new callable; the master caches functions (and workers keep
        # them), so the batch travels as the argument of one fixed function instead:
        # its class's __call__, importable wherever joblib is.
        run = type(func).__call__ if not _is_plain_function(func) else None
        future = executor.submit(run, func) if run is not None else executor.submit(func)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    apply_async = submit  # joblib before 1.5 calls it by this name

    def retrieve_result_callback(self, out: Future) -> Any:
        """The batch's results, or the task's own exception (a lost worker's, a cancel's)."""
        return out.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A call failed: cancel this backend's other tasks, queued and running alike.

        The master stays up either way; the next ``Parallel`` call reuses it.
        """
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
        for future in pending:
            future.cancel()

    def terminate(self) -> None:
        """End of a ``Parallel`` call: the master stays for the next one."""
        self.reset_batch_stats()

    def get_nested_backend(self) -> tuple[ParallelBackendBase, int | None]:
        """Calls nested inside a task run one after another on its worker: no oversubscription.

        The worker is already one of the interface's parallel slots; more processes or
        threads under it would compete with the other workers for the same cores.
        """
        level = (self.nesting_level or 0) + 1
        return SequentialBackend(nesting_level=level), None

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)


_shared: dict[str, Master] = {}
_shared_lock = threading.Lock()


def _key(interface: Any, options: dict[str, Any]) -> str:
    return repr((interface, sorted(options.items())))


def _shared_master(interface: Any, options: dict[str, Any]) -> Master:
    """The open master for ``interface`` and ``options``, made on first use.

    The key is the options' repr: equal settings give one master. The master's own exit
    handler closes it at the end of the program.
    """
    key = _key(interface, options)
    with _shared_lock:
        master = _shared.get(key)
        if master is None or master.closed:
            master = _shared[key] = Master(interface, **options)
        return master


_executors: weakref.WeakValueDictionary[int, PyMWExecutor] = weakref.WeakValueDictionary()
_executors_lock = threading.Lock()


def _executor_for(master: Master) -> PyMWExecutor:
    """One executor per master, shared by every backend given that master.

    An executor watches its master as an observer, and observers cannot be removed:
    one per ``parallel_config`` block would make every task's end call them all. The
    master's observer list keeps the executor alive exactly as long as the master.
    """
    with _executors_lock:
        executor = _executors.get(id(master))
        if executor is None or executor.master is not master:
            executor = PyMWExecutor(master=master)
            _executors[id(master)] = executor
        return executor


def _is_plain_function(func: Any) -> bool:
    return isinstance(func, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))
