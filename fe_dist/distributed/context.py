"""`Context`: what the rest of fe_dist knows about the ranks of a run.

Three implementations: `LocalContext` (one process), `HorovodContext` (Horovod's collectives)
and `MPIContext` (mpi4py). Each backend implements only the few collectives marked abstract
below (and, where it has them, abort and elastic behaviour); the operations built on them
(broadcasting variables, differentiable sums, averaging, agreeing on errors) are shared. How
gradients are compressed and grouped is a policy above this, in `gradients.py`. Nothing outside
`fe_dist/distributed/` imports horovod; everything else talks to this interface.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import ipaddress
import os
import socket
import struct
import sys
from typing import Any, Callable, Iterator, NoReturn, Sequence

import tensorflow as tf

from fe_dist.distributed.watchdog import Watchdog
from fe_dist.errors import ConfigError, DistributedError

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert


ABORT_EXIT_CODE = 1
# Set on an exception that `Context.agree` raised on every rank together.
_RAISED_ON_EVERY_RANK = "_fe_dist_raised_on_every_rank"


def raised_on_every_rank(error: BaseException) -> bool:
    """True if ``error`` came from `Context.agree`: every rank raised at the same point, so it
    can propagate as a normal exception (a user may catch it) without leaving a rank waiting."""
    return getattr(error, _RAISED_ON_EVERY_RANK, False)


def mark_raised_on_every_rank(error: BaseException) -> BaseException:
    """Mark ``error`` as raised on every rank together (by a check every rank ran on the same
    gathered data), so `Estimator.fit` lets it propagate instead of ending the job."""
    setattr(error, _RAISED_ON_EVERY_RANK, True)
    return error


class Context(abc.ABC):
    """The ranks of a run and the collectives fe_dist needs.

    Attributes:
        rank: This process's rank, 0 to size - 1.
        size: Number of ranks.
        local_rank: Rank among the processes on this host (selects the GPU).
        local_size: Number of ranks on this host (divides the CPU cores).
        threads: Intra-op threads this rank was pinned to.
        backend: "local" or "horovod".
    """

    backend: str = ""

    def __init__(self, rank: int, size: int, local_rank: int, local_size: int) -> None:
        self.rank = rank
        self.size = size
        self.local_rank = local_rank
        self.local_size = local_size
        self.threads = 0
        self.device = "CPU"
        self.watchdog: Watchdog | None = None

    def _start(self, threads: int, device: str) -> None:
        """Record the pinning; subclasses call this right after pinning."""
        self.threads, self.device = threads, device

    @property
    def is_chief(self) -> bool:
        """True on rank 0, which logs and whose plan and start state every rank adopts."""
        return self.rank == 0

    # -- collectives implemented by each backend --------------------------------------------------
    @abc.abstractmethod
    def broadcast_object(self, obj: Any, name: str, root: int = 0) -> Any:
        """Rank ``root``'s ``obj`` (picklable), on every rank."""

    @abc.abstractmethod
    def allgather_object(self, obj: Any, name: str) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""

    @abc.abstractmethod
    def _allreduce_sum(self, tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
        """Element-wise sums over ranks; callable inside ``tf.function``."""

    @abc.abstractmethod
    def _broadcast_tensor(self, tensor: tf.Tensor, name: str, root: int) -> tf.Tensor:
        """Rank ``root``'s value of ``tensor``."""

    @abc.abstractmethod
    def barrier(self) -> None:
        """Wait until every rank gets here."""

    # -- what fe_dist uses --------------------------------------------------------------------------
    def progress(self, where: str) -> None:
        """Tell the stall watchdog (multi-rank runs) that this rank is alive, about to do
        ``where``."""
        if self.watchdog is not None:
            self.watchdog.progress(where)

    def watch(self, armed: bool) -> None:
        """Arm the stall watchdog while training, disarm it outside."""
        if self.watchdog is not None:
            self.watchdog.arm(armed)

    @contextlib.contextmanager
    def unwatched(self, where: str) -> Iterator[None]:
        """Disarm the stall watchdog for a phase that may rightly outlast the stall timeout and
        that no heartbeat can cover on every rank (e.g. the other ranks wait while rank 0 writes
        a checkpoint); re-arm it after, with a fresh deadline, if it was armed."""
        self.progress(where)
        armed = self.watchdog is not None and self.watchdog.armed
        self.watch(False)
        try:
            yield
        finally:
            if armed:
                self.watch(True)

    def abort(self, message: str) -> NoReturn:
        """End the whole job now, after printing ``message`` (e.g. a traceback) to stderr.

        For a failure on one rank that the others cannot learn of (they wait in a collective):
        this process exits at once, without Python's shutdown (which may wait on collectives),
        and the launcher (horovodrun, mpirun) then ends the other ranks. Backends with a way to
        end every rank themselves override this.
        """
        _write_stderr(message)
        os._exit(ABORT_EXIT_CODE)

    def run_elastic(self, train: Callable[[Callable[[], None]], None], sync: Callable[[], None],
                    snapshot: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        """Run ``sync()`` then ``train(commit)``.

        The base behaviour, for runs with a fixed set of ranks: ``commit`` does nothing. An
        elastic backend instead re-runs ``sync`` and ``train`` after ranks come or go, rolling
        back to the state ``snapshot`` took at the last ``commit`` (or at the end of the last
        ``sync``, when no epoch has been committed since) when a rank failed.

        Args:
            train: The epoch loop; calls ``commit()`` after each epoch.
            sync: Collectives that bring every rank to rank 0's plan and state.
            snapshot: Returns the training state (host copies).
            restore: Puts a snapshot back.
        """
        sync()
        train(lambda: None)

    @_static_helper
    def allreduce_sum(self, tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
        """Element-wise sums over ranks of ``tensors`` (one collective); callable inside
        ``tf.function``. ``name`` must be the same on every rank and unique within a step."""
        return self._allreduce_sum(tensors, name)

    def broadcast_variables(self, variables: Sequence[Any], names: Sequence[str],
                            root: int = 0) -> None:
        """Assign rank ``root``'s values to ``variables`` on every rank."""
        for var, name in zip(variables, names):
            var.assign(self._broadcast_tensor(tf.convert_to_tensor(var), name, root))

    def sum_over_ranks(self, tensor: tf.Tensor, name: str) -> tf.Tensor:
        """The element-wise sum of ``tensor`` over ranks, differentiable: its gradient is the sum
        of the upstream gradients over ranks (each rank's loss depends on every rank's input).
        Callable inside ``tf.function``; used by `fe_dist.layers.SyncBatchNormalization`.

        Args:
            tensor: This rank's value (the same shape and dtype on every rank).
            name: Collective name, the same on every rank and unique within a step.
        """
        if self.backend == "local":
            # Decided by backend, not by size: a compiled step keeps what it traced, and an
            # elastic run traced on one rank may grow to several.
            return tensor

        @tf.custom_gradient
        def summed(x: tf.Tensor) -> tuple[tf.Tensor, Callable]:
            def grad(upstream: tf.Tensor) -> tf.Tensor:
                return self._allreduce_sum([upstream], f"{name}.grad")[0]

            return self._allreduce_sum([x], name)[0], grad

        return summed(tensor)

    def average_variables(self, variables: Sequence[Any], name: str) -> None:
        """Set ``variables`` (float) to their mean over ranks, the same bits on every rank.

        Computed as rank 0's value plus the mean of each rank's difference from it, so a variable
        that already holds the same value everywhere keeps it exactly (a plain sum / N can move
        it by a rounding step when N is not a power of two).
        """
        if self.size == 1 or not variables:
            return
        for i, var in enumerate(variables):
            value = tf.convert_to_tensor(var)
            reference = self._broadcast_tensor(value, f"{name}.{i}.ref", 0)
            delta = self._allreduce_sum([value - reference], f"{name}.{i}.delta")[0]
            var.assign(reference + delta / self.size)

    def agree(self, error: BaseException | None, what: str) -> None:
        """Raise on every rank if any rank hit ``error``.

        Each rank reports whether its check failed; all ranks then raise together, so a mistake
        seen by one rank cannot leave the others waiting in a collective.
        """
        report = None if error is None else (type(error).__name__, str(error))
        reports = self.allgather_object(report, name=f"fe.agree.{what}")
        if error is not None:
            setattr(error, _RAISED_ON_EVERY_RANK, True)
            raise error
        failed = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
        if failed:
            rank, (kind, message) = failed[0]
            cls = ConfigError if kind == ConfigError.__name__ else DistributedError
            collective = cls(f"[rank {rank} failed the {what} check] {message}")
            setattr(collective, _RAISED_ON_EVERY_RANK, True)
            raise collective


def interface_address(iface: str) -> str | None:
    """The IPv4 address of network interface ``iface`` on this host, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            packed = fcntl.ioctl(sock.fileno(), 0x8915,  # SIOCGIFADDR
                                 struct.pack("256s", iface.encode()[:15]))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


def launch_interface() -> str | None:
    """The network interface the launcher was told to use across hosts, if any:
    ``horovodrun --network-interface`` (HOROVOD_GLOO_IFACE) or Open MPI's
    ``--mca btl_tcp_if_include``."""
    for var in ("HOROVOD_GLOO_IFACE", "OMPI_MCA_btl_tcp_if_include"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value and "/" not in value:  # Open MPI also takes subnets (a.b.c.d/n)
            return value
    return None


def resolves_to_loopback(hostname: str) -> str | None:
    """The loopback address ``hostname`` resolves to, or None (also when it does not resolve)."""
    try:
        address = socket.gethostbyname(hostname)
    except OSError:
        return None
    return address if ipaddress.ip_address(address).is_loopback else None


def host_label() -> str:
    """This rank's host for logs: its hostname and the address peers reach it at (the launch
    interface's, else the hostname's, if not loopback). Hosts may share a hostname (containers,
    network namespaces, cloned images), so the address tells them apart."""
    hostname = socket.gethostname()
    iface = launch_interface()
    address = interface_address(iface) if iface else None
    if address is None and resolves_to_loopback(hostname) is None:
        try:
            address = socket.gethostbyname(hostname)
        except OSError:
            address = None
    return f"{hostname} ({address})" if address and address != hostname else hostname


def describe_hosts(labels: Sequence[str]) -> str:
    """``labels[r]`` is rank r's host: "2 hosts: h0 (ranks 0-1), h1 (ranks 2-3)"."""
    ranks: dict[str, list[int]] = {}
    for rank, label in enumerate(labels):
        ranks.setdefault(label, []).append(rank)

    def span(rs: list[int]) -> str:
        contiguous = rs == list(range(rs[0], rs[-1] + 1))
        if len(rs) == 1:
            return f"rank {rs[0]}"
        return f"ranks {rs[0]}-{rs[-1]}" if contiguous else f"ranks {','.join(map(str, rs))}"

    parts = ", ".join(f"{label} {span(rs)}" for label, rs in ranks.items())
    return f"{len(ranks)} host{'s' if len(ranks) != 1 else ''}: {parts}"


def _write_stderr(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(message if message.endswith("\n") else message + "\n")
    sys.stderr.flush()
