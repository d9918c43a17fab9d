"""`ModelOp`: run a model built by `fe_dist.build`."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import keras
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.tensorop import TensorOp


class ModelOp(TensorOp):
    """Run ``model`` on ``inputs`` and write its prediction to ``outputs``.

    A model trains in an epoch exactly when a train-mode ModelOp for it is active then, with
    ``trainable=True``.

    Args:
        inputs: Key of the model's input.
        model: A model made by `fe_dist.build`.
        outputs: Key of the prediction.
        mode: "train", "eval" or None for both.
        trainable: False runs the model in train mode without updating it.
    """

    def __init__(self, inputs: str | Sequence[str], model: keras.Model,
                 outputs: str | Sequence[str], mode: str | Iterable[str] | None = None,
                 trainable: bool = True) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        if not getattr(model, "model_name", None):
            raise ConfigError(
                f"ModelOp got {type(model).__name__} {getattr(model, 'name', '')!r}, which was not "
                "made by fe_dist.build. Wrap it: fe.build(model_def=..., model_name=..., "
                "optimizer=..., loss_name=...).")
        if len(self.outputs) != 1:
            raise ConfigError(f"ModelOp for model {model.model_name!r}: give one output key, "
                              f"got {self.outputs!r}.")
        self.model = model
        self.trainable = trainable

    def forward(self, data: list[tf.Tensor], state: dict[str, Any]) -> tf.Tensor:
        x = data[0] if len(data) == 1 else data
        return self.model(x, training=state["mode"] == "train")

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model.model_name, "trainable": self.trainable}
