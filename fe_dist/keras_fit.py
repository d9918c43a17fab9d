"""What Keras' own ``model.fit`` does with a model that fe_dist must do too, or refuse.

fe_dist trains a user's Keras model with its own step (ModelOp, loss op, allreduce), so every
part of ``fit`` that lives outside the model's layers and optimizer has to be mirrored here, or
refused before training: never trained differently in silence. Checked against Keras' fit by
tests/conformance/ (docs/concepts.md, "Checked against Keras").

Mirrored: the end of fit (`finalize`: ``optimizer.finalize_variable_values``, which copies the
EMA weights into the model under ``use_ema=True``); loss scaling under a global
``mixed_float16`` policy (fe.build wraps the optimizer, as Keras' compile does).
Refused (`check_model`): a compiled model (fe_dist reads neither its optimizer nor its loss),
an overridden ``train_step`` or ``compute_loss`` (fe_dist never calls them), and
``BatchNormalization(synchronized=True)`` (synchronised only under ``tf.distribute``, so each
Horovod rank would normalise by its own share).
"""

from __future__ import annotations

import keras

from fe_dist.errors import ConfigError

# Methods of keras.Model that Keras' fit calls and fe_dist's step does not.
_TRAINING_HOOKS = {
    "train_step": "write the step as fe_dist ops (ModelOps, loss ops, TensorOps) in the Network",
    "compute_loss": "compute the extra terms in a LossOp (one value per sample), or add them "
                    "with self.add_loss in a layer (model.losses joins the loss)",
}


def check_model(model: keras.Model, model_name: str) -> None:
    """Refuse Keras features of ``model`` that fe_dist would silently not honour."""
    where = f"fe.build({model_name!r})"
    if getattr(model, "compiled", False):
        raise ConfigError(
            f"{where}: model_def returned a compiled model (model.compile() was called). fe_dist "
            "does not read compile(): its optimizer, loss, loss_weights and metrics would be "
            "ignored. Give the optimizer to fe.build(optimizer=...) and the loss as a loss op "
            "(fe_dist.op.tensorop.loss), and drop model.compile() (a saved model: "
            "keras.models.load_model(path, compile=False)).")
    for hook, alternative in _TRAINING_HOOKS.items():
        own = getattr(type(model), hook, None)
        if own is not None and own is not getattr(keras.Model, hook):
            raise ConfigError(
                f"{where}: {type(model).__name__} overrides {hook}(), which Keras' fit calls and "
                f"fe_dist never does (its step runs the Network's ops), so the model would "
                f"train without it. Instead, {alternative}.")
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization) and getattr(
                layer, "synchronized", False):
            raise ConfigError(
                f"{where}: layer {layer.name!r} is BatchNormalization(synchronized=True), which "
                "Keras synchronises only under tf.distribute; on fe_dist's ranks each would "
                "normalise by its own share. Use fe_dist.layers.SyncBatchNormalization (same "
                "arguments; on one process it is plain BatchNormalization).")


def needs_loss_scaling(model: keras.Model) -> bool:
    """Whether Keras' compile would wrap the model's optimizer in a LossScaleOptimizer: the
    model runs under the ``mixed_float16`` policy (also when the user set it globally)."""
    return getattr(getattr(model, "dtype_policy", None), "name", None) == "mixed_float16"


def finalize(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """The end of Keras' fit: ``optimizer`` (the one that trained ``model`` last) sets the final
    weights. With ``use_ema=True`` the moving averages replace the trainable weights; for other
    optimizers it does nothing."""
    optimizer.finalize_variable_values(model.trainable_variables)
