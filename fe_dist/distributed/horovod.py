"""`HorovodContext`: Horovod's core collectives (Gloo or MPI controller).

Horovod's Keras helpers (`hvd.keras`, `DistributedGradientTape`, `broadcast_variables`) target
Keras 2 and fail on Keras 3 variables, so only the core ops are used: `grouped_allreduce`,
`broadcast` on plain tensors, and the object collectives.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from typing import Any, Callable, Iterator

import horovod.tensorflow as hvd
import tensorflow as tf
from horovod.common.elastic import State, run_fn
from horovod.common.exceptions import HorovodInternalError

from fe_dist.distributed.context import (Context, interface_address, launch_interface,
                                         resolves_to_loopback)
from fe_dist.errors import ConfigError
from fe_dist.distributed.pinning import pin
from fe_dist.distributed.watchdog import Watchdog

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert


class HorovodContext(Context):
    """Ranks launched by `horovodrun` or `mpirun`, or the ranks of an mpi4py communicator.

    Args:
        comm: An mpi4py communicator to train on (e.g. a sub-communicator of COMM_WORLD); None
            uses every launched rank.
    """

    backend = "horovod"

    def __init__(self, comm: Any = None) -> None:
        check_gloo_hostname()
        if comm is None:
            hvd.init()
        else:
            hvd.init(comm=comm)
        super().__init__(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),
                         local_size=hvd.local_size())
        self.controller = "mpi" if hvd.mpi_enabled() else "gloo"
        # Set by `horovodrun --min-np/--max-np --host-discovery-script` (Gloo only).
        self.elastic = os.environ.get("HOROVOD_ELASTIC") == "1"
        self._start(*pin(self.local_rank, self.local_size))
        if self.size > 1 or self.elastic:
            self.watchdog = Watchdog(self.rank, self.size)

    def run_elastic(self, train: Callable[[Callable[[], None]], None], sync: Callable[[], None],
                    snapshot: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        """Under an elastic launch, Horovod's elastic loop: when a rank fails the others roll
        back to the last commit, re-initialise with the ranks left and sync; when ranks are
        added or removed everyone re-syncs at the next commit. Otherwise, the fixed-rank loop.

        Horovod's own `TensorFlowKerasState` cannot be used with Keras 3 (it calls
        ``optimizer.variables()`` and `broadcast_variables`, both Keras-2 only), and its `run`
        only recognises failed ``HorovodAllreduce`` ops, not the ``HorovodGroupedAllreduce``
        fe_dist uses; so fe_dist drives Horovod's generic `run_fn` with a state of its own.

        Horovod's `run_fn` skips ``sync`` after a reset that only removed hosts (every rank
        left holds the committed state), but fe_dist's ``sync`` also agrees on the plan, whose
        per-rank batches and micro-batches depend on the number of ranks; so a reset always
        ends in a full ``sync`` before training resumes.
        """
        if not self.elastic:
            super().run_elastic(train, sync, snapshot, restore)
            return
        state = _ElasticState(self, sync, snapshot, restore)

        def attempt(state: _ElasticState) -> None:
            if state.needs_sync:  # run_fn skipped it: only hosts were removed
                state.sync()
            with _collective_failures_as_internal_errors():
                train(state.commit)

        run_fn(attempt, self._reset)(state)

    def _reset(self) -> None:
        # Unwatched: the rendezvous waits for hosts under Horovod's own elastic timeout
        # (HOROVOD_ELASTIC_TIMEOUT, 600 s by default), longer than a stall.
        with self.unwatched("the elastic rendezvous (Horovod re-initialising)"):
            hvd.shutdown()
            hvd.init()
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()
        if self.watchdog is not None:
            self.watchdog.rank, self.watchdog.size = self.rank, self.size

    def broadcast_object(self, obj: Any, name: str, root: int = 0) -> Any:
        return hvd.broadcast_object(obj, root_rank=root, name=name)

    def allgather_object(self, obj: Any, name: str) -> list[Any]:
        return hvd.allgather_object(obj, name=name)

    @_static_helper
    def _allreduce_sum(self, tensors: list[tf.Tensor], name: str) -> list[tf.Tensor]:
        return hvd.grouped_allreduce(tensors, op=hvd.Sum, name=name)

    def _broadcast_tensor(self, tensor: tf.Tensor, name: str, root: int) -> tf.Tensor:
        return hvd.broadcast(tensor, root_rank=root, name=name)

    def barrier(self) -> None:
        # Horovod's TF binding has no barrier op; a tiny allreduce waits for every rank as well.
        self._allreduce_sum([tf.zeros([1])], name="fe.barrier")[0].numpy()


def check_gloo_hostname() -> None:
    """Before a Gloo job that spans hosts starts, check that this host's name resolves to an
    address other hosts can reach.

    Horovod 0.28.1's Gloo transport creates its TCP device from the address the hostname
    resolves to, even with ``--network-interface`` (HOROVOD_GLOO_IFACE): checked on emulated
    hosts, a host whose name is unresolvable aborts with "Unable to find address for: <name>",
    and one whose name resolves to 127.0.x.x advertises loopback, so its peers abort with
    ``gloo::IoException ... connect [127.0.0.1]:<port>: Connection refused`` (a message naming
    neither the host nor the cause). One host (HOROVOD_CROSS_SIZE 1) is fine: loopback is right.

    Raises:
        ConfigError: naming the hostname, what it resolves to, and the fix.
    """
    if os.environ.get("HOROVOD_CONTROLLER", "").lower() != "gloo":
        return
    if int(os.environ.get("HOROVOD_CROSS_SIZE", "1")) <= 1:
        return
    iface = launch_interface()
    address = interface_address(iface) if iface else None
    if address is not None and resolves_to_loopback(address):
        return  # "hosts" of one machine over loopback (localhost:1,127.0.0.1:1 on interface lo)
    hostname = socket.gethostname()
    try:
        socket.gethostbyname(hostname)
        resolved = resolves_to_loopback(hostname)
        if resolved is None:
            return
        problem = f"resolves to the loopback address {resolved}"
    except OSError:
        problem = "does not resolve to any address"
    here = (f"{address}, its address on {iface}" if address else
            "its address on the network the job uses")
    raise ConfigError(
        f"This host's name {hostname!r} {problem}, so Horovod's Gloo transport cannot tell the "
        f"other hosts where to reach this rank (they would fail with 'gloo::IoException ... "
        f"connect [127.0.0.1]' or 'Unable to find address for: {hostname}'). Make the hostname "
        f"resolve to {here}: e.g. the line '{address or '<address>'} {hostname}' in /etc/hosts "
        f"(instead of '127.0.1.1 {hostname}') or a DNS record; or give each host a distinct name "
        "that resolves so. Launching with MPI (horovodrun --mpi, mpirun) avoids Gloo's lookup.")


class _ElasticState(State):
    """fe_dist's training state for Horovod's elastic loop: host copies of every model and
    optimizer variable and the records, taken after each sync and at each commit (the end of an
    epoch).

    As in Horovod's own states, ``sync`` ends with a ``save``: a rank failing before the first
    commit (in epoch 0, or the first epoch after a resume or a reset) rolls the others back to
    the state every rank agreed on, not to a half-trained epoch. Nothing is saved at creation:
    the first sync (which restores a checkpoint on rank 0) must run before there is a state to
    return to, and a failure inside it leaves the untrained variables as they are.

    Attributes:
        needs_sync: True from a reset until the next completed ``sync``.
    """

    def __init__(self, ctx: HorovodContext, sync: Callable[[], None],
                 snapshot: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        super().__init__(bcast_object=lambda obj: ctx.broadcast_object(obj, "fe.elastic.hosts"),
                         get_rank=hvd.rank)
        self._ctx = ctx
        self._sync, self._snapshot, self._restore = sync, snapshot, restore
        self._saved = None
        self.needs_sync = True

    def save(self) -> None:
        self._ctx.progress("the elastic commit (a host copy of the training state)")
        self._saved = self._snapshot()

    def restore(self) -> None:
        if self._saved is not None:
            self._restore(self._saved)

    def sync(self) -> None:
        self._ctx.progress("the elastic sync to rank 0's state")
        with _collective_failures_as_internal_errors():
            self._sync()
        self.needs_sync = False
        self.save()

    def reset(self) -> None:
        # Called by Horovod after every reset, before its (possibly skipped) sync.
        self.needs_sync = True


@contextlib.contextmanager
def _collective_failures_as_internal_errors() -> Iterator[None]:
    """Re-raise a failed Horovod collective (a rank is gone: Gloo reports a reset connection)
    as the HorovodInternalError that Horovod's elastic loop recovers from."""
    try:
        yield
    except tf.errors.OpError as err:
        if re.search(r"horovod|gloo", str(err), re.IGNORECASE):
            raise HorovodInternalError(err) from err
        raise


def build_info() -> dict[str, str]:
    """How this Horovod was built: its controllers and GPU collectives (for fe-bench's versions
    line)."""
    info = {"horovod_gloo": str(bool(hvd.gloo_built())), "horovod_mpi": str(bool(hvd.mpi_built()))}
    nccl = hvd.nccl_built()
    info["horovod_nccl"] = str(nccl) if nccl else "no"
    return info
