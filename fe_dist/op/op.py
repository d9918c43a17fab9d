"""`Op`: the base of every pipeline and network op."""

from __future__ import annotations

import hashlib
import inspect
import numbers
from typing import Any, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from fe_dist.determinism import seed_traced_ops
from fe_dist.errors import ConfigError

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert

MODES = ("train", "eval", "test")
_KEYS = ("inputs", "outputs", "mode")


def set_keys(owner: Any, inputs: str | Sequence[str] | None,
             outputs: str | Sequence[str] | None, mode: str | Iterable[str] | None) -> None:
    """Check and set ``owner``'s (an op's or a trace's) ``inputs``, ``outputs`` and ``mode``."""
    name = type(owner).__name__
    owner.inputs = _as_keys(inputs, "inputs", name)
    owner.outputs = _as_keys(outputs, "outputs", name)
    for m in [mode] if isinstance(mode, str) else list(mode or []):
        if m.removeprefix("!") not in MODES:
            raise ConfigError(f"{name}: mode {m!r} is not one of {MODES}, a negation such "
                              "as '!train', or None for every mode.")
    owner.mode = mode


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


class Described:
    """Something with ``inputs``, ``outputs`` and ``mode`` that describes itself by its
    constructor arguments, recorded automatically (as Keras' ``Operation`` does): ops and
    traces. Equal descriptions mean equal behaviour, so ranks compare them in the run plan and
    compiled steps and datasets are cached by them.

    Attributes:
        local_args: Constructor arguments that may differ by rank because only rank 0 acts on
            them (where it writes files); left out of the description, so FastEstimator's
            ``save_dir=tempfile.mkdtemp()`` (another directory on every rank) is fine.
    """

    local_args: tuple[str, ...] = ()
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    mode: str | Iterable[str] | None

    def __new__(cls, *args: Any, **kwargs: Any) -> "Described":
        instance = super().__new__(cls)
        instance._init_args = recorded_arguments(cls, instance, args, kwargs)
        return instance

    def get_config(self) -> dict[str, Any]:
        """Settings to describe beyond the constructor arguments, which are recorded
        automatically; what it returns is merged over them (equal configs mean equal behaviour).
        Override it for state set up other than from the arguments."""
        return {}

    def _config(self) -> dict[str, Any]:
        config = {k: v for k, v in getattr(self, "_init_args", {}).items()
                  if k not in _KEYS and k not in self.local_args}
        config.update(self.get_config())
        return {"inputs": self.inputs, "outputs": self.outputs, "mode": self.mode, **config}

    def signature(self) -> str:
        """A plain string that identifies what this does, the same on every rank; used by the
        run plan. Arrays are named by a hash of their contents, functions by their qualified
        name."""
        body = ", ".join(f"{k}={describe(v)}" for k, v in self._config().items())
        return f"{type(self).__name__}({body})"

    def __repr__(self) -> str:
        return self.signature()


class Op(Described):
    """Reads ``inputs`` keys of a batch dictionary and writes ``outputs`` keys.

    The arguments an op was constructed with are recorded automatically (as Keras' ``Operation``
    does), so two instances of the same class with different arguments never share a compiled
    step or dataset, and every rank can compare its schedule with rank 0's.

    Args:
        inputs: Key(s) read.
        outputs: Key(s) written.
        mode: "train", "eval", "test", a list of them, "!mode" for every mode but one
            (FastEstimator's "!train": eval and test), or None for every mode.
    """

    def __init__(self,
                 inputs: str | Sequence[str] | None = None,
                 outputs: str | Sequence[str] | None = None,
                 mode: str | Iterable[str] | None = None) -> None:
        set_keys(self, inputs, outputs, mode)

    def forward(self, data: Any, state: dict[str, Any]) -> Any:
        """Compute the outputs from the inputs (whole batches).

        Args:
            data: The tensor of the input key when the op has one input key; a list of tensors,
                one per input key in order, when it has several (FastEstimator's convention).
            state: ``{"mode": "train"|"eval"|"test"}``.

        Returns:
            The tensor of the output key when the op has one output key; a list or tuple, one
            per output key in order, when it has several.
        """
        raise NotImplementedError

    def cache_key(self) -> tuple[str, int | None]:
        """The key of compiled steps and datasets built with this op: its signature, and its
        identity when the signature cannot tell two instances apart (an argument that is a
        lambda, a closure or an object without a readable value)."""
        faithful = all(_is_faithful(v) for v in self._config().values())
        return self.signature(), None if faithful else id(self)


def recorded_arguments(cls: type, instance: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments ``cls.__init__`` is about to get, by parameter name, defaults filled in
    (for ``__new__`` of classes that describe themselves by their constructor arguments: ops,
    traces)."""
    try:
        bound = inspect.signature(cls.__init__).bind(instance, *args, **kwargs)
        bound.apply_defaults()
        return dict(list(bound.arguments.items())[1:])  # without self
    except TypeError:  # a wrong call: __init__ itself raises the usual message
        return {}


def describe(value: Any) -> str:
    """``value`` as text that is equal on every rank for equal values."""
    if isinstance(value, (str, bool, numbers.Number)) or value is None:
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(describe(v) for v in value)
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{describe(k)}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (np.ndarray, np.generic, tf.Tensor, tf.Variable)):
        array = np.asarray(value)
        digest = hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()[:12]
        return f"array({array.dtype}{list(array.shape)}, sha1={digest})"
    if isinstance(value, Op):
        return value.signature()
    if getattr(value, "model_name", None):  # a model made by fe_dist.build
        return f"model({value.model_name!r})"
    if isinstance(value, keras.layers.Layer):
        # A model a user op calls itself: Keras' repr carries an auto-name (sequential_3) that
        # depends on what was built before, which a resumed program need not repeat.
        shapes = [tuple(v.shape) for v in value.weights]
        return f"<{type(value).__qualname__} weights={shapes}>"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    text = repr(value)
    # A default repr carries a memory address, different on every rank: name the type instead.
    return f"<{type(value).__module__}.{type(value).__qualname__}>" if " at 0x" in text else text


def _is_faithful(value: Any) -> bool:
    """Whether ``describe(value)`` tells ``value`` apart from every different value."""
    if isinstance(value, (str, bool, numbers.Number, np.ndarray, np.generic, tf.Tensor,
                          tf.Variable)) or value is None:
        return True
    if isinstance(value, Op):  # an op wrapped by another (Sometimes, OneOf): by its own args
        return value.cache_key()[1] is None
    if isinstance(value, (list, tuple)):
        return all(_is_faithful(v) for v in value)
    if isinstance(value, dict):
        return all(_is_faithful(k) and _is_faithful(v) for k, v in value.items())
    if getattr(value, "model_name", None):
        return True
    if isinstance(value, keras.layers.Layer):  # described by its shapes, not its weights
        return False
    if callable(value) and hasattr(value, "__qualname__"):
        # A module-level function is one object per name; lambdas and closures are not.
        return "<lambda>" not in value.__qualname__ and "<locals>" not in value.__qualname__
    return " at 0x" not in repr(value)


def run_ops(ops: Sequence[Op], store: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Run ``ops`` in order on the batch dictionary ``store``, writing their outputs into it.
    Random ops they trace draw from this rank's stream (`fe_dist.determinism.seed_traced_ops`)."""
    seed_traced_ops()
    for op in ops:
        store_outputs(op, op.forward(op_inputs(op, store), state), store)
    return store


@_static_helper
def op_inputs(op: Op, store: dict[str, Any]) -> Any:
    """What ``op`` reads from ``store``: the value of its one input key, or a list of several."""
    data = [store[key] for key in op.inputs]
    return data[0] if len(data) == 1 else data


@_static_helper
def store_outputs(op: Op, out: Any, store: dict[str, Any]) -> None:
    """Write what ``op`` returned into ``store``: one value for one output key, one per key
    (a list or tuple, in order) for several; otherwise a ConfigError."""
    if len(op.outputs) == 1:
        outs = [out]
    elif isinstance(out, (list, tuple)) and len(out) == len(op.outputs):
        outs = list(out)
    else:
        got = f"{len(out)} values" if isinstance(out, (list, tuple)) else "one value"
        raise ConfigError(f"{op}: produced {got} for {len(op.outputs)} output keys "
                          f"{op.outputs}. Return one value per output key, in order.")
    store.update(zip(op.outputs, outs))


def cache_key(ops: Sequence[Op]) -> tuple:
    """The cache key of a list of ops (see `Op.cache_key`)."""
    return tuple(op.cache_key() for op in ops)
