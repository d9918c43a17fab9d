"""`Op`: the base of every pipeline and network op."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.errors import ConfigError

_MODES = ("train", "eval")


def _as_keys(keys: str | Sequence[str] | None, what: str, op_name: str) -> tuple[str, ...]:
    if keys is None:
        return ()
    if isinstance(keys, str):
        return (keys,)
    keys = tuple(keys)
    if not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"{op_name}: {what} must be a key name or a sequence of key names, "
                          f"got {keys!r}.")
    return keys


class Op:
    """Reads ``inputs`` keys of a batch dictionary and writes ``outputs`` keys.

    Args:
        inputs: Key(s) read.
        outputs: Key(s) written.
        mode: "train", "eval", a list of them, or None for both.
    """

    def __init__(self,
                 inputs: str | Sequence[str] | None = None,
                 outputs: str | Sequence[str] | None = None,
                 mode: str | Iterable[str] | None = None) -> None:
        name = type(self).__name__
        self.inputs = _as_keys(inputs, "inputs", name)
        self.outputs = _as_keys(outputs, "outputs", name)
        modes = [mode] if isinstance(mode, str) else list(mode or [])
        for m in modes:
            if m not in _MODES:
                raise ConfigError(f"{name}: mode {m!r} is not one of {_MODES} (or None for both).")
        self.mode = mode

    def forward(self, data: list[tf.Tensor], state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        """Compute the outputs from the input tensors (whole batches).

        Args:
            data: One tensor per input key, in order.
            state: ``{"mode": "train"|"eval"}``.
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The op's settings beyond its keys; equal configs mean equal behaviour."""
        return {}

    def signature(self) -> str:
        """A plain string that identifies what this op does; used by the run plan."""
        config = {"inputs": self.inputs, "outputs": self.outputs, "mode": self.mode,
                  **self.get_config()}
        body = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({body})"

    def __repr__(self) -> str:
        return self.signature()


def run_ops(ops: Sequence[Op], store: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Run ``ops`` in order on the batch dictionary ``store``, writing their outputs into it."""
    for op in ops:
        out = op.forward([store[key] for key in op.inputs], state)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(outs) != len(op.outputs):
            raise ConfigError(f"{op}: produced {len(outs)} values for {len(op.outputs)} output "
                              f"keys {op.outputs}. Give one output key per value.")
        store.update(zip(op.outputs, outs))
    return store


def check_ops(ops: Any, owner: str) -> list[Any]:
    """``ops`` as a list, each an `Op` or a `Scheduler` of ops; otherwise a ConfigError."""
    from fe_dist.schedule import BaseScheduler  # schedule does not depend on ops; no cycle

    ops = list(ops or [])
    for i, item in enumerate(ops):
        values = item.get_all_values() if isinstance(item, BaseScheduler) else [item]
        for value in values:
            if not isinstance(value, Op):
                raise ConfigError(f"{owner} ops[{i}] is {value!r}, not an op. Give fe_dist ops "
                                  "(e.g. Resize, ModelOp) or Schedulers of them.")
    return ops
