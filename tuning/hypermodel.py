"""KerasTuner HyperModel for EmoBed."""

from __future__ import annotations

import os

import keras_tuner as kt

from emobed_tf import configs
from emobed_tf.experiments import experiment
from emobed_tf.model.metrics import dev_monitor


def model_hyperparameters(hp, base: configs.TrainConfig) -> dict:
    """Declares the searched model, loss and optimiser hyperparameters on ``hp``; their values.

    Each is named after its ``TrainConfig`` field and defaults to ``base``;
    alpha is searched only where the mode uses it (joint, emobed), beta
    likewise (triplet, emobed), and the auxiliary warm-up where the mode
    trains on the auxiliary modality (up to 5 epochs, fewer than ``epochs``).
    ``encoder_units`` is the latent size: the encoders' output, the shared
    space of the crossmodal term.
    """
    b = base
    hps = {
        "encoder_type": hp.Choice("encoder_type", list(configs.ENCODER_TYPES),
                                  default=b.model.encoder_type),
        "encoder_layers": hp.Int("encoder_layers", 1, 3, default=b.model.encoder_layers),
        "dense_dropout": hp.Float("dense_dropout", 0.0, 0.7, step=0.1,
                                  default=b.model.dense_dropout),
        # the latent size (the shared space)
        "encoder_units": hp.Int("encoder_units", 32, 256, step=8, default=b.model.encoder_units),
        "shared_layers": hp.Int("shared_layers", 1, 3, default=b.model.shared_layers),
        "shared_units": hp.Int("shared_units", 32, 256, step=8, default=b.model.shared_units),
        "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log",
                                  default=b.learning_rate),
        "l2": hp.Float("l2", 1e-6, 1e-2, sampling="log", default=b.loss.l2),
        # the L2 weight of the dense form (pooled features): the one a dense model trains with
        "dense_l2": hp.Float("dense_l2", 1e-5, 1e-1, sampling="log", default=b.loss.dense_l2),
    }
    if b.mode in ("joint", "emobed"):
        hps["alpha"] = hp.Float("alpha", 0.0, 2.0, step=0.1, default=b.loss.alpha)
    if b.mode in ("triplet", "emobed"):
        hps["beta"] = hp.Float("beta", 0.0, 2.0, step=0.1, default=b.loss.beta)
    if b.mode != "classic":
        top = max(b.loss.aux_warmup_epochs, min(5, b.epochs - 1))
        hps["aux_warmup_epochs"] = hp.Int("aux_warmup_epochs", 0, top,
                                          default=b.loss.aux_warmup_epochs)
    return hps


def batch_size(hp, base: configs.TrainConfig) -> int:
    """Declares the searched batch size on ``hp`` (in ``fit``); its value. ``base`` is
    resolved (its batch size is a number: the dense form's whole-set 1024 widens the range)."""
    bs = base.data.batch_size
    return hp.Int("batch_size", 2, max(256, bs), sampling="log", default=bs)


def resolved_base(base: configs.TrainConfig, sources: dict) -> configs.TrainConfig:
    """``base`` with its auto batch size, epochs and select_on decided for the data in
    ``sources`` (``emobed_tf.configs.resolved``); the encoder type stays as given (it is
    searched, and ``auto`` is one of its values)."""
    import dataclasses

    return dataclasses.replace(experiment.resolve_config(base, sources), model=base.model)


def search_space(base: configs.TrainConfig) -> dict:
    """``{name: {"type", ranges..., "default"}}`` of every searched hyperparameter.

    What ``tuning.search`` records in ``search.json`` to recognise its search.

    >>> base = configs.resolved(configs.TrainConfig(dataset="demo", out="unused", mode="joint"),
    ...                         "dense")
    >>> space = search_space(base)
    >>> sorted(space)  # no beta in joint mode
    ['alpha', 'aux_warmup_epochs', 'batch_size', 'dense_dropout', 'dense_l2', 'encoder_layers',
     'encoder_type', 'encoder_units', 'l2', 'learning_rate', 'shared_layers', 'shared_units']
    >>> space["alpha"]["type"], space["alpha"]["min_value"], space["alpha"]["max_value"]
    ('Float', 0.0, 2.0)
    """
    hp = kt.HyperParameters()
    model_hyperparameters(hp, base)
    batch_size(hp, base)
    out = {}
    for h in hp.space:
        cfg = {k: v for k, v in h.get_config().items() if k != "name"}
        out[h.name] = {"type": type(h).__name__, **cfg}
    return out


class EmoBedHyperModel(kt.HyperModel):
    """Searches alpha, beta, the encoder type, layer sizes (the latent size among them), the
    auxiliary warm-up, learning rate, L2 weights (the GRU form's and the dense form's) and
    batch size.

    Every hyperparameter is named after its ``TrainConfig`` field and
    defaults to the base configuration (the paper's values for registered
    data sets), so ``hp.Fixed`` pins any of them and the best values feed
    straight into ``emobed_tf.train --hparams``. The mode and the target
    modality are fixed per search; alpha is searched only where the mode
    uses it (joint, emobed), beta likewise (triplet, emobed).

    Args:
        base: the base :class:`~emobed_tf.configs.TrainConfig`.
        sources: ``{modality: Source}`` (see ``emobed_tf.experiments.experiment.resolve_sources``).

    Example:
    >>> hm = EmoBedHyperModel(cfg, sources)            # doctest: +SKIP
    >>> tuner = kt.RandomSearch(hm, objective=hm.objective, max_trials=20)  # doctest: +SKIP
    """

    def __init__(self, base: configs.TrainConfig, sources: dict, **kwargs):
        super().__init__(**kwargs)
        self.base = resolved_base(base, sources)
        self.sources = sources
        self.task = sources[base.target].manifest.task

    @property
    def objective(self) -> kt.Objective:
        """The target modality's dev score: macro-F1 or mean CCC, maximised."""
        name = dev_monitor(self.task)
        return kt.Objective(name, direction="max")

    def search_space(self) -> dict:
        """The searched hyperparameters and their ranges (see :func:`search_space`)."""
        return search_space(self.base)

    def config(self, hp) -> configs.TrainConfig:
        return configs.apply_hparams(self.base, model_hyperparameters(hp, self.base))

    def build(self, hp):
        import keras

        # the base's --precision, set per build: KerasTuner's clear_session() between trials
        # resets Keras' global dtype policy
        keras.mixed_precision.set_global_policy(self.base.precision)
        return experiment.build_model(self.config(hp), self.sources)

    def fit(self, hp, model, *args, **kwargs):
        batch = batch_size(hp, self.base)
        cfg = configs.apply_hparams(self.config(hp), {"batch_size": batch})
        train_ds, dev_ds = experiment.make_datasets(cfg, self.sources)
        who = os.environ.get("KERASTUNER_TUNER_ID", "chief")
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(hp.values.items()))
        print(f"[{who}] trial: {shown}", flush=True)
        kwargs.setdefault("epochs", cfg.epochs)
        return model.fit(train_ds, validation_data=dev_ds, **kwargs)
