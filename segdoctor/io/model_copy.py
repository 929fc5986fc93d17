"""Working copies of a loaded Keras model, so that training or training-mode passes never touch the user's model.

A copy is ``keras.models.clone_model`` plus the weights; the ``trainable`` flags are copied layer by
layer afterwards, because rebuilding a nested model from its config sets every inner flag to the outer
one (a frozen backbone whose BatchNormalization layers were made trainable again would lose that).
A model that cannot be cloned (a subclassed model) is loaded again from its file.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _sublayers(layer: Any) -> list[Any]:
    return list(getattr(layer, "layers", None) or [])


def copy_trainable_flags(source: Any, target: Any) -> None:
    """Give every layer of ``target`` the ``trainable`` flag of the layer at the same place in ``source``."""
    if type(source).__name__ != type(target).__name__:
        return
    try:
        target.trainable = bool(source.trainable)
    except Exception:  # a layer whose flag cannot be set keeps its own
        pass
    src, dst = _sublayers(source), _sublayers(target)
    if len(src) == len(dst):
        for s, d in zip(src, dst):
            copy_trainable_flags(s, d)


def weights_snapshot(model: Any) -> list[np.ndarray]:
    """Copies of every weight (trainable and not: BatchNormalization statistics included)."""
    return [np.array(w, copy=True) for w in model.get_weights()]


def same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def copy_model(loaded: Any) -> Any:
    """A new model with the architecture, weights and trainable flags of ``loaded.model`` (a ``LoadedModel``)."""
    from segdoctor.io.model import import_keras

    keras = import_keras()
    model = loaded.model
    try:
        with keras.saving.custom_object_scope(dict(loaded.custom_objects or {})):
            clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        copy_trainable_flags(model, clone)
        return clone
    except Exception as exc:  # subclassed models cannot be cloned: read the file again
        reason = f"{type(exc).__name__}: {exc}"
    log.info("clone_model failed (%s); loading a second copy from %s", reason, loaded.path)
    if loaded.format == "memory":
        from segdoctor.errors import ModelLoadError

        raise ModelLoadError(f"model {model.name!r}: Keras cannot clone it ({reason}); expected a Functional or Sequential "
                             "model, or save it with model.save('model.keras') and pass the file.")
    from segdoctor.io.model import load_model

    again = load_model(loaded.path, custom_objects=loaded.custom_objects, unsafe=loaded.unsafe)
    return again.model
