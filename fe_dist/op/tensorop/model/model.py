"""`ModelOp`: run a model built by `fe_dist.build`."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import keras
import tensorflow as tf

from fe_dist.build import info
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
        trainable: False runs the model without updating it, in inference mode (BatchNorm uses
            its moving statistics and leaves them alone, Dropout is off), as FastEstimator does.
    """

    def __init__(self, inputs: str | Sequence[str], model: keras.Model,
                 outputs: str | Sequence[str], mode: str | Iterable[str] | None = None,
                 trainable: bool = True) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        info(model)  # a ConfigError unless fe_dist.build made it
        if len(self.outputs) != 1:
            raise ConfigError(f"ModelOp for model {model.model_name!r}: give one output key, "
                              f"got {self.outputs!r}.")
        self.model = model
        self.trainable = trainable

    def forward(self, data: tf.Tensor | list[tf.Tensor], state: dict[str, Any]) -> tf.Tensor:
        # A frozen model runs in inference mode, as in FastEstimator: its BatchNormalization
        # layers use and keep their moving statistics, and Dropout is off.
        return self.model(data, training=state["mode"] == "train" and self.trainable)
