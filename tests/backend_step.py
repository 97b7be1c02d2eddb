"""Run under another Keras backend (jax, torch) by tests/test_backends.py: Eq. (8) and a step.

``python tests/backend_step.py IN.npz MODEL.keras OUT.npz [IN2 MODEL2 OUT2 ...]`` loads the model saved by the
TensorFlow side, computes the loss terms, their gradients and one ``train_step`` (jitted
under JAX) on the batch in IN.npz, and writes them to OUT.npz (keys ``term/...``, ``grad/<path>``,
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


def numpy(x):
    return keras.ops.convert_to_numpy(x.detach() if hasattr(x, "detach") else x)


def main(inp, model_path, out):
    from emobed_tf.model.emobed import load_model

    batch = unflatten(np.load(inp))
    model = load_model(model_path)
    results = {}
    terms, _ = model.compute_terms(batch, training=True)
    results.update({f"term/{k}": numpy(v) for k, v in terms.items()})
    if keras.backend.backend() == "torch":
        torch_step(model, batch, terms, results)
    else:
        jax_step(model, batch, results)
    np.savez(out, **results)


def torch_step(model, batch, terms, results):
    model.zero_grad()
    terms["loss"].backward()
    results.update({f"grad/{v.path}": np.zeros(v.shape) if v.value.grad is None
                    else numpy(v.value.grad) for v in model.trainable_variables})
    model.zero_grad()
    logs = model.train_step(batch)  # what fit runs
    results.update({f"new/{v.path}": numpy(v.value) for v in model.trainable_variables})
    results.update({f"log/{k}": numpy(v) for k, v in logs.items()})


def jax_step(model, batch, results):
    import jax

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


if __name__ == "__main__":
    args = sys.argv[1:]
    for i in range(0, len(args), 3):  # one process for several (batch, model, out) triples
        main(*args[i:i + 3])
