"""KerasTuner HyperModel for EmoBed."""

from __future__ import annotations

import os

import keras_tuner as kt

from emobed_tf import configs as C
from emobed_tf import train as T


class EmoBedHyperModel(kt.HyperModel):
    """Searches alpha, beta, layer sizes, learning rate, L2 weight and batch size.

    Every hyperparameter is named after its ``TrainConfig`` field and
    defaults to the base configuration (the paper's values for registered
    data sets), so ``hp.Fixed`` pins any of them and the best values feed
    straight into ``emobed_tf.train --hparams``. The mode and the target
    modality are fixed per search; alpha is searched only where the mode
    uses it (joint, emobed), beta likewise (triplet, emobed).

    Args:
        base: the base :class:`~emobed_tf.configs.TrainConfig`.
        sources: ``{modality: Source}`` (see ``emobed_tf.train.resolve_sources``).

    Example:
    >>> hm = EmoBedHyperModel(cfg, sources)            # doctest: +SKIP
    >>> tuner = kt.RandomSearch(hm, objective=hm.objective, max_trials=20)  # doctest: +SKIP
    """

    def __init__(self, base: C.TrainConfig, sources: dict, **kwargs):
        super().__init__(**kwargs)
        self.base = base
        self.sources = sources
        self.task = sources[base.target].manifest.task

    @property
    def objective(self) -> kt.Objective:
        """The target modality's dev score: macro-F1 or mean CCC, maximised."""
        name = "val_f1_macro" if self.task == "classification" else "val_ccc"
        return kt.Objective(name, direction="max")

    def config(self, hp) -> C.TrainConfig:
        b = self.base
        hps = {
            "encoder_layers": hp.Int("encoder_layers", 1, 3, default=b.model.encoder_layers),
            "encoder_units": hp.Int("encoder_units", 32, 256, step=8,
                                    default=b.model.encoder_units),
            "shared_layers": hp.Int("shared_layers", 1, 3, default=b.model.shared_layers),
            "shared_units": hp.Int("shared_units", 32, 256, step=8, default=b.model.shared_units),
            "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log",
                                      default=b.learning_rate),
            "l2": hp.Float("l2", 1e-6, 1e-2, sampling="log", default=b.loss.l2),
        }
        if b.mode in ("joint", "emobed"):
            hps["alpha"] = hp.Float("alpha", 0.0, 2.0, step=0.1, default=b.loss.alpha)
        if b.mode in ("triplet", "emobed"):
            hps["beta"] = hp.Float("beta", 0.0, 2.0, step=0.1, default=b.loss.beta)
        return T.apply_hparams(b, hps)

    def build(self, hp):
        return T.build_model(self.config(hp), self.sources)

    def fit(self, hp, model, *args, **kwargs):
        batch = hp.Int("batch_size", 2, 256, sampling="log", default=self.base.data.batch_size)
        cfg = T.apply_hparams(self.config(hp), {"batch_size": batch})
        train_ds, dev_ds = T.make_datasets(cfg, self.sources)
        who = os.environ.get("KERASTUNER_TUNER_ID", "chief")
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(hp.values.items()))
        print(f"[{who}] trial: {shown}", flush=True)
        kwargs.setdefault("epochs", cfg.epochs)
        return model.fit(train_ds, validation_data=dev_ds, **kwargs)
