"""Run under another Keras backend by tests/test_backends.py: Eq. (8) and one training step.

``python tests/backend_step.py IN.npz MODEL.keras OUT.npz`` loads the model saved by the
TensorFlow side, computes the loss terms, their gradients and one jitted ``train_step`` on the
batch in IN.npz, and writes them to OUT.npz (keys ``term/...``, ``grad/<path>``,
``new/<path>``, ``log/...``).
"""

import sys

import keras
import numpy as np


def unflatten(npz):
    batch = {}
    for key in npz.files:
        mod, name = key.split("/")
        batch.setdefault(mod, {})[name] = npz[key]
    return batch


def main(inp, model_path, out):
    import jax

    assert keras.backend.backend() == "jax", keras.backend.backend()
    from emobed_tf.model import load_model

    batch = unflatten(np.load(inp))
    model = load_model(model_path)
    results = {}
    terms, _ = model.compute_terms(batch, training=True)
    results.update({f"term/{k}": np.asarray(v) for k, v in terms.items()})

    trainable = [v.value for v in model.trainable_variables]

    def loss_fn(values):
        mapping = list(zip(model.trainable_variables, values))
        with keras.StatelessScope(state_mapping=mapping):
            t, _ = model.compute_terms(batch, training=True)
        return t["loss"]

    grads = jax.grad(loss_fn)(trainable)
    results.update({f"grad/{v.path}": np.asarray(g)
                    for v, g in zip(model.trainable_variables, grads)})

    model.optimizer.build(model.trainable_variables)
    state = (trainable, [v.value for v in model.non_trainable_variables],
             [v.value for v in model.optimizer.variables],
             [v.value for v in model.metrics_variables])
    logs, state = jax.jit(model.train_step)(state, batch)  # the step fit compiles
    results.update({f"new/{v.path}": np.asarray(x)
                    for v, x in zip(model.trainable_variables, state[0])})
    results.update({f"log/{k}": np.asarray(v) for k, v in logs.items()})
    np.savez(out, **results)


if __name__ == "__main__":
    main(*sys.argv[1:4])
