"""Distribution: ``tf.distribute`` strategies and the multi-worker training loop.

``--strategy mirrored`` trains on the devices of one machine through
``model.fit``; ``--strategy multiworker`` uses the machines listed in
``TF_CONFIG`` through :func:`fit_multiworker`, because ``model.fit`` fails
under ``MultiWorkerMirroredStrategy`` with Keras 3.15 (keras-team/keras#20585).
"""

from __future__ import annotations

from emobed_tf.configs import STRATEGIES
from emobed_tf.records.schema import DataError


def make_strategy(name: str):
    """The ``tf.distribute`` strategy for ``--strategy`` (None for ``none``).

    >>> make_strategy("none") is None
    True
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "none":
        return None
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG


def fit_multiworker(model, strategy, train_ds, epochs: int, start: int, ckpt, dev_logs,
                    verbose: int = 1) -> None:
    """Training loop for ``MultiWorkerMirroredStrategy``.

    Each step runs ``model.train_step`` through ``strategy.run`` on a
    distributed dataset: the batch is the global batch, split between the
    workers, whose gradients are summed (all-reduce); every worker runs the
    same number of steps (collectives need it). ``dev_logs(model)`` returns the
    target modality's dev score and dev loss under the names ``fit`` logs them
    (:func:`emobed_tf.experiments.experiment.dev_logs`); ``ckpt`` is the run's
    checkpoint callback, which selects on one of them.
    A model with an auxiliary warm-up (``aux_warmup_epochs``) runs its first
    epochs in that phase, with a step traced for each phase.
    """
    import tensorflow as tf

    workers = strategy.num_replicas_in_sync
    n = int(train_ds.cardinality())
    per_epoch = (n // workers) * workers
    if per_epoch == 0:
        raise DataError(f"{n} training batches cannot be shared by {workers} workers")
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist = strategy.experimental_distribute_dataset(train_ds.take(per_epoch).with_options(opts))

    def make_step():
        @tf.function
        def step(batch):
            strategy.run(model.train_step, args=(batch,))
        return step

    steps = {}  # per phase: the warm-up is a Python setting the traced step reads
    target = model.target
    ckpt.set_model(model)
    for epoch in range(start, epochs):
        if getattr(model, "aux_warmup_epochs", 0):
            model.set_aux_warmup(epoch < model.aux_warmup_epochs)
        phase = getattr(model, "in_aux_warmup", False)
        if phase not in steps:
            steps[phase] = make_step()
        step = steps[phase]
        ckpt.on_epoch_begin(epoch)
        for m in model.metrics:
            m.reset_state()
        seen = examples = 0
        for batch in dist:
            step(batch)
            seen += 1
            for part in strategy.experimental_local_results(batch[target]["label"]):
                examples += int(part.shape[0])
            ckpt.on_train_batch_end(seen - 1, {m.name: m.result() for m in model.metrics})
        logs = {m.name: float(m.result()) for m in model.metrics}
        logs.update(dev_logs(model))
        logs["batches_this_worker"] = seen  # global batches, split across the workers
        logs["examples_this_worker"] = examples
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: " + " - ".join(
                f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        ckpt.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
