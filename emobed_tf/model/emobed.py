"""The EmoBed model: two modality encoders, one shared predictor (Eqs. 1-8)."""

from __future__ import annotations

import weakref

import keras
from keras import ops

from emobed_tf import configs
from emobed_tf.model import losses, metrics
from emobed_tf.model.stacks import ENCODER_TYPES, _masked_mean, make_stack


_RESULT_FNS = weakref.WeakKeyDictionary()  # a model's traced metric results (get_metrics_result)


def resolve_encoder_type(encoder_type: str, manifests) -> str:
    """``dense``/``gru`` for a requested type; ``auto``: ``dense`` when every item has one frame.

    ``manifests`` are ``(Manifest, modality)`` pairs of the data the model
    reads; an item has at least one frame, so one frame per item means a
    modality's frame count equals its item count (summed over the splits).
    A manifest without frame counts resolves to ``gru``.
    """
    if encoder_type != "auto":
        if encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be auto or one of {ENCODER_TYPES}, "
                             f"got {encoder_type!r}")
        return encoder_type
    for manifest, modality in manifests:
        info = manifest.modalities[modality]
        items, frames = sum(info.counts.values()), sum(info.frames.values())
        if not items or frames != items:
            return "gru"
    return "dense"


class AuxWarmup(keras.callbacks.Callback):
    """Sets an :class:`EmoBed` model's auxiliary warm-up phase from the epoch number.

    Epochs ``0 .. aux_warmup_epochs - 1`` (counted from the run's start, so
    a resumed ``fit(initial_epoch=...)`` is in the right phase) train on the
    auxiliary modality alone; :meth:`EmoBed.fit` adds this callback itself.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_aux_warmup(epoch < self.model.aux_warmup_epochs)


@keras.saving.register_keras_serializable(package="emobed_tf")
class EmoBed(keras.Model):
    """Crossmodal emotion embedding model with a custom joint training step.

    f_A and f_V (:class:`GRUStack`) map audio and video feature sequences
    into a shared E-dimensional space (E = ``encoder_units``); the shared
    network f (a GRU stack plus a dense head) predicts the emotion from
    either embedding. With ``encoder_type="dense"`` (the form for pooled,
    one-frame features) the encoders and the shared network are
    :class:`DenseStack` s instead: frame-wise Dense layers, and for
    classification the shared network takes the mean of the valid frames'
    embeddings (with one frame: that frame). ``train_step`` minimises Eq. (8)::

        J = L_target + alpha * L_auxiliary + beta * L_triplet + l2 * R

    where ``L_triplet`` is the crossmodal batch-hard triplet loss over
    ``{e_A; e_V}`` and ``R`` is the sum of squared kernels of the trained
    sub-networks. With ``alpha = beta = 0`` (the classic system) the
    auxiliary modality is not needed and not run.

    With ``aux_warmup_epochs`` K > 0, the first K epochs of ``fit`` (see
    :class:`AuxWarmup`) train the auxiliary encoder, the shared network
    and the head on the auxiliary modality alone (``L_auxiliary + l2 *
    R`` over those sub-networks; the target encoder is not updated), then
    Eq. (8) starts.

    Batches are dicts ``{"audio": {"features", "mask", "label"}, "video":
    {...}}`` (see ``emobed_tf.data.pipeline``); evaluation batches need only the
    target modality. Calling the model on ``{modality: {"features",
    "mask"}}`` returns ``{modality: {"prediction", "embedding"}}``.

    Args:
        task: ``"classification"`` or ``"regression"``.
        num_outputs: classes K, or label dimensions for regression.
        input_dims: feature dimension per modality, e.g.
            ``{"audio": 88, "video": 4096}``.
        target: the modality the model is for (``"audio"``/``"video"``).
        alpha: weight of the auxiliary modality's loss (Eqs. 3-4).
        beta: weight of the crossmodal triplet loss (Eq. 7).
        l2: weight λ of the L2 term.
        encoder_layers, encoder_units: size of f_A and f_V.
        shared_layers, shared_units: size of the shared stack of f.
        dropout: input dropout of every GRU layer.
        dense_dropout: input dropout of every Dense layer of the dense form.
        encoder_type: ``gru`` (the paper's) or ``dense`` (for pooled features).
        dense_activation: activation of the Dense layers of the dense form.
        aux_warmup_epochs: epochs trained on the auxiliary modality alone
            first (needs alpha > 0 or beta > 0).
        regression_loss: ``"ccc"`` (1 - CCC) or ``"mse"``.
        triplet_form, triplet_margin, triplet_reduction: see
            :func:`emobed_tf.model.losses.batch_hard_triplet_loss`.
        triplet_space: ``raw``, ``unit`` or ``auto`` (decided by
            :func:`emobed_tf.configs.triplet_space_for` from ``encoder_type`` and
            ``dense_activation``; the model records the decision).
        triplet_frame_stride: for sequence labels (regression), every n-th
            frame of each window enters the triplet batch.
        triplet_thresholds: thresholds that bin continuous labels into
            classes for triplet mining (default: high/low around 0 per
            dimension).
        output_names: class names or dimension names.
        logits_head: the classification head outputs logits (the Keras
            convention; the loss takes them ``from_logits``, and
            :meth:`probabilities` turns them into probabilities). ``False``
            is the form of files saved before this setting existed (a
            softmax head), which load with it.

    Example:
    >>> model = EmoBed("classification", 7, {"audio": 88, "video": 4096},
    ...                encoder_layers=1, shared_layers=1)
    >>> model.compile(optimizer="adam")
    """

    def __init__(self, task="classification", num_outputs=7, input_dims=None, target="audio",
                 alpha=0.5, beta=0.5, l2=1e-4, encoder_layers=2, encoder_units=120,
                 shared_layers=2, shared_units=120, dropout=0.0, regression_loss="ccc",
                 triplet_form="paper", triplet_margin=0.0, triplet_reduction="mean",
                 triplet_space="auto", triplet_frame_stride=10, triplet_thresholds=(0.0,),
                 output_names=None,
                 crossmodal_loss="triplet", temperature=0.1, encoder_type="gru",
                 dense_activation="relu", aux_warmup_epochs=0, dense_dropout=0.5,
                 logits_head=True, **kwargs):
        super().__init__(**kwargs)
        input_dims = dict(input_dims or {"audio": 88, "video": 4096})
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be classification or regression, got {task!r}")
        if target not in configs.MODALITIES:
            raise ValueError(f"target must be one of {configs.MODALITIES}, got {target!r}")
        if target not in input_dims:
            raise ValueError(f"no input dimension for the target modality {target!r}")
        if regression_loss not in losses.REGRESSION_LOSSES:
            raise ValueError(f"regression_loss must be one of {sorted(losses.REGRESSION_LOSSES)}")
        if crossmodal_loss not in losses.CROSSMODAL_LOSSES:
            raise ValueError(f"crossmodal_loss must be one of {losses.CROSSMODAL_LOSSES}, "
                             f"got {crossmodal_loss!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if alpha < 0 or beta < 0 or l2 < 0:
            raise ValueError("alpha, beta and l2 must be >= 0")
        if encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}"
                             " (resolve auto with resolve_encoder_type)")
        if int(aux_warmup_epochs) < 0:
            raise ValueError(f"aux_warmup_epochs must be >= 0, got {aux_warmup_epochs}")
        if aux_warmup_epochs and not (alpha > 0 or beta > 0):
            raise ValueError("aux_warmup_epochs > 0 needs the auxiliary modality (alpha > 0 "
                             "or beta > 0); the classic system never trains on it")
        self.task = task
        self.num_outputs = int(num_outputs)
        self.input_dims = input_dims
        self.target = target
        self.auxiliary = configs.auxiliary_of(target)
        if (alpha > 0 or beta > 0) and self.auxiliary not in input_dims:
            raise ValueError(f"alpha/beta > 0 need the auxiliary modality {self.auxiliary!r} "
                             "in input_dims")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.l2 = float(l2)
        self.encoder_layers = encoder_layers
        self.encoder_units = encoder_units
        self.shared_layers = shared_layers
        self.shared_units = shared_units
        self.dropout = dropout
        self.regression_loss = regression_loss
        self.triplet_form = triplet_form
        self.triplet_margin = float(triplet_margin)
        self.triplet_reduction = triplet_reduction
        if triplet_space not in configs.TRIPLET_SPACES:
            raise ValueError(f"triplet_space must be one of {configs.TRIPLET_SPACES}, "
                             f"got {triplet_space!r}")
        self.triplet_space = (configs.triplet_space_for(encoder_type, dense_activation)
                              if triplet_space == "auto" else triplet_space)
        self.triplet_frame_stride = int(triplet_frame_stride)
        self.triplet_thresholds = tuple(float(t) for t in triplet_thresholds)
        self.output_names_ = list(output_names or [])
        self.crossmodal_loss = crossmodal_loss
        self.temperature = float(temperature)
        self.encoder_type = encoder_type
        self.dense_activation = dense_activation
        self.dense_dropout = float(dense_dropout)
        self.aux_warmup_epochs = int(aux_warmup_epochs)
        self._aux_warmup = False  # the phase; set per epoch by AuxWarmup
        self.logits_head = bool(logits_head)

        drop = dense_dropout if encoder_type == "dense" else dropout
        for m in configs.MODALITIES:
            if m in input_dims:
                enc = make_stack(encoder_type, encoder_units, encoder_layers, True, drop,
                                 dense_activation, name=f"{m}_encoder")
                enc.build((None, None, input_dims[m]))
                setattr(self, f"{m}_encoder", enc)
        seq = task == "regression"
        self.shared = make_stack(encoder_type, shared_units, shared_layers, seq, drop,
                                 dense_activation, name="shared")
        self.shared.build((None, None, encoder_units))
        # classification: logits (a softmax only in files saved before logits_head existed)
        softmax_head = not seq and not self.logits_head
        self.head = keras.layers.Dense(num_outputs, activation="softmax" if softmax_head else None,
                                       name="head", dtype="float32")
        self.head.build((None, shared_units))
        self.built = True

        self.trackers = {"loss": keras.metrics.Mean(name="loss"),
                         "target_loss": keras.metrics.Mean(name="target_loss")}
        if self.alpha > 0 or self.aux_warmup_epochs:
            self.trackers["auxiliary_loss"] = keras.metrics.Mean(name="auxiliary_loss")
        if self.beta > 0:
            self.trackers[self.crossmodal_term] = keras.metrics.Mean(name=self.crossmodal_term)
        if self.l2 > 0:
            self.trackers["l2_loss"] = keras.metrics.Mean(name="l2_loss")
        if seq:
            self.score = metrics.ConcordanceCC(self.num_outputs,
                                               name=metrics.SCORES["regression"].score_name)
        else:
            name = metrics.SCORES["classification"].score_name
            self.score = metrics.ConfusionScore(self.num_outputs, name, name=name)

    # -- properties ---------------------------------------------------------

    @property
    def encoders(self) -> dict:
        """``{modality: GRUStack}`` for the modalities this model has."""
        return {m: getattr(self, f"{m}_encoder") for m in configs.MODALITIES if m in self.input_dims}

    @property
    def uses_auxiliary(self) -> bool:
        return self.alpha > 0 or self.beta > 0

    @property
    def crossmodal_term(self) -> str:
        """Name of the beta-weighted term: ``triplet_loss`` (the paper's) or ``prototype_loss``."""
        return f"{self.crossmodal_loss}_loss"

    @property
    def score_name(self) -> str:
        """Name of the dev score logged as ``val_<score_name>``."""
        return self.score.name

    @property
    def metrics(self):
        return list(self.trackers.values()) + [self.score]

    def get_metrics_result(self):
        """Keras' epoch-end metric values, computed in one traced call under TensorFlow (the
        eager form ran each metric's ops one by one: about a fifth of a whole-set-batch run)."""
        if keras.backend.backend() != "tensorflow":
            return super().get_metrics_result()
        import tensorflow as tf

        if not tf.executing_eagerly():
            return super().get_metrics_result()
        fn = _RESULT_FNS.get(self)
        if fn is None:
            ref = weakref.ref(self)  # the function must not keep the model alive
            fn = _RESULT_FNS[self] = tf.function(lambda: {m.name: m.result()
                                                          for m in ref().metrics})
        return fn()

    def active_modalities(self):
        return [self.target, self.auxiliary] if self.uses_auxiliary else [self.target]

    def active_trainable_variables(self):
        """The variables the current step trains (in the auxiliary warm-up: not the target's
        encoder)."""
        mods = [self.auxiliary] if self._aux_warmup else self.active_modalities()
        layers = [self.encoders[m] for m in mods] + [self.shared, self.head]
        return [v for layer in layers for v in layer.trainable_variables]

    @property
    def in_aux_warmup(self) -> bool:
        """Whether the steps now train on the auxiliary modality alone (see :class:`AuxWarmup`)."""
        return self._aux_warmup

    def set_aux_warmup(self, active: bool) -> None:
        """Enters or leaves the auxiliary warm-up phase.

        The phase is a Python setting that the traced step reads, so a
        change rebuilds Keras' train function (traced again on its next call).
        """
        active = bool(active)
        if active and not self.aux_warmup_epochs:
            raise ValueError("this model has no auxiliary warm-up (aux_warmup_epochs = 0)")
        if active == self._aux_warmup:
            return
        self._aux_warmup = active
        if getattr(self, "train_function", None) is not None:
            self.make_train_function(force=True)

    def fit(self, *args, **kwargs):
        """Keras' ``fit``, with :class:`AuxWarmup` first among the callbacks when the
        model has an auxiliary warm-up."""
        if self.aux_warmup_epochs:
            callbacks = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, AuxWarmup) for c in callbacks):
                kwargs["callbacks"] = [AuxWarmup(), *callbacks]
        return super().fit(*args, **kwargs)

    # -- forward ------------------------------------------------------------

    def encode(self, modality, features, mask=None, training=False):
        """e = f_m(x): per-frame embeddings [B, T, E]."""
        if modality not in self.encoders:
            raise ValueError(f"this model has no {modality} encoder (it has {sorted(self.encoders)})")
        return self.encoders[modality](features, mask=mask, training=training)

    def predict_from_embedding(self, embedding, mask=None, training=False):
        """y = f(e): [B, T, K] for regression, [B, K] logits otherwise (see
        :meth:`probabilities`)."""
        h = self.shared(embedding, mask=mask, training=training)
        return self.head(h)

    def probabilities(self, prediction):
        """Class probabilities from the head's output ``prediction`` (a softmax of the logits;
        a softmax head's output as it is); regression predictions unchanged."""
        if self.task == "classification" and self.logits_head:
            return ops.softmax(ops.cast(prediction, "float32"), axis=-1)
        return prediction

    def forward(self, modality, batch, training=False):
        """Runs one modality; returns prediction (classification: logits, see
        :meth:`probabilities`) and (pooled) embedding."""
        mask = batch.get("mask")
        e = self.encode(modality, batch["features"], mask, training)
        y = self.predict_from_embedding(e, mask, training)
        if self.task == "classification":
            pooled = _masked_mean(e, mask) if mask is not None else ops.mean(e, axis=1)
        else:
            pooled = e
        return {"prediction": y, "embedding": pooled}

    def forward_batch(self, data, training=False):
        """Both modalities of a mixed batch: each encoder once, the shared network once.

        The shared network f runs on the target and auxiliary embeddings
        concatenated along the batch (padded to a common length and masked),
        which gives the same numbers as two calls at the cost of one; the
        auxiliary predictions are skipped when alpha = 0 (triplet system).
        """
        mods = self.active_modalities()
        masks, embs = {}, {}
        for m in mods:
            x = data[m]["features"]
            masks[m] = data[m].get("mask")
            if masks[m] is None:
                masks[m] = ops.ones(ops.shape(x)[:2], "bool")
            embs[m] = self.encode(m, x, masks[m], training)
        aux_head = self.alpha > 0 or self._aux_warmup
        heads = [self.target] + ([self.auxiliary] if aux_head else [])
        if len(heads) == 1:
            preds = {self.target: self.predict_from_embedding(embs[self.target],
                                                              masks[self.target], training)}
        else:
            lengths = [embs[m].shape[1] for m in heads]
            if all(isinstance(t, int) for t in lengths):  # static: stays a Python int (jit)
                t_max = max(lengths)
            else:
                t_max = ops.maximum(*[ops.shape(embs[m])[1] for m in heads])
            e_cat = ops.concatenate([self._pad_time(embs[m], t_max) for m in heads], 0)
            m_cat = ops.concatenate([self._pad_time(masks[m], t_max) for m in heads], 0)
            y = self.predict_from_embedding(e_cat, m_cat, training)
            n_t = ops.shape(embs[self.target])[0]
            preds = {self.target: y[:n_t], self.auxiliary: y[n_t:]}
            if self.task == "regression":  # back to each modality's own length
                preds = {m: preds[m][:, : ops.shape(embs[m])[1]] for m in heads}
        out = {}
        for m in mods:
            pooled = _masked_mean(embs[m], masks[m]) if self.task == "classification" else embs[m]
            out[m] = {"prediction": preds.get(m), "embedding": pooled}
        return out

    @staticmethod
    def _pad_time(x, length):
        pad = length - ops.shape(x)[1]
        widths = [[0, 0], [0, pad]] + [[0, 0]] * (len(x.shape) - 2)
        return ops.pad(x, widths, constant_values=False if x.dtype == "bool" else 0)

    def call(self, inputs, training=False):
        return {m: self.forward(m, inputs[m], training) for m in inputs if m in self.encoders}

    # -- losses -------------------------------------------------------------

    def task_loss(self, batch, prediction):
        if self.task == "classification":
            return losses.classification_loss(batch["label"], prediction,
                                              from_logits=self.logits_head)
        fn = losses.REGRESSION_LOSSES[self.regression_loss]
        return fn(batch["label"], prediction, batch.get("mask"))

    def _triplet_inputs(self, batch, embedding):
        """(labels [N], embeddings [N, E], valid [N]) of one modality."""
        if self.task == "classification":
            n = ops.shape(embedding)[0]
            return batch["label"], embedding, ops.ones((n,), "float32")
        s = self.triplet_frame_stride
        e = embedding[:, ::s]
        lab = losses.bin_labels(batch["label"][:, ::s], self.triplet_thresholds)
        mask = batch["mask"][:, ::s]
        e = ops.reshape(e, (-1, ops.shape(e)[-1]))
        return ops.reshape(lab, (-1,)), e, ops.reshape(ops.cast(mask, "float32"), (-1,))

    def crossmodal_term_value(self, batches, outputs):
        """The beta-weighted crossmodal term: the paper's triplet or the prototype loss."""
        if self.crossmodal_loss == "triplet":
            return self.triplet_loss(batches, outputs)
        a, b = (self._triplet_inputs(batches[m], outputs[m]["embedding"])
                for m in (self.target, self.auxiliary))
        if self.task == "classification":
            classes = self.num_outputs
        else:
            classes = (len(self.triplet_thresholds) + 1) ** self.num_outputs
        return losses.crossmodal_prototype_loss(a[0], a[1], b[0], b[1], classes, a[2], b[2],
                                           temperature=self.temperature)

    def triplet_loss(self, batches, outputs):
        parts = [self._triplet_inputs(batches[m], outputs[m]["embedding"])
                 for m in self.active_modalities()]
        labels = ops.concatenate([p[0] for p in parts], 0)
        emb = ops.concatenate([ops.cast(p[1], "float32") for p in parts], 0)
        # classification: every row is an item (no padding), so no mask to apply
        valid = None if self.task == "classification" else ops.concatenate(
            [p[2] for p in parts], 0)
        return losses.batch_hard_triplet_loss(labels, emb, valid, form=self.triplet_form,
                                         margin=self.triplet_margin,
                                         reduction=self.triplet_reduction,
                                         space=self.triplet_space)

    def l2_penalty(self):
        kernels = [v for v in self.active_trainable_variables() if "kernel" in v.name]
        return self.l2 * ops.sum(ops.stack([ops.sum(ops.square(ops.cast(k, "float32")))
                                            for k in kernels]))

    def compute_terms(self, data, training=False):
        """All terms of Eq. (8) for one mixed batch, and their weighted sum.

        In the auxiliary warm-up: the auxiliary's own loss and the L2 term of
        the sub-networks it trains (the target is still run, for the logged
        training score, but no term depends on it).
        """
        self._check_batch(data)
        outputs = self.forward_batch(data, training)
        if self._aux_warmup:
            terms = {"auxiliary_loss": self.task_loss(data[self.auxiliary],
                                                      outputs[self.auxiliary]["prediction"])}
            total = terms["auxiliary_loss"]
            if self.l2 > 0:
                terms["l2_loss"] = self.l2_penalty()
                total = total + terms["l2_loss"]
            terms["loss"] = total
            return terms, outputs
        terms = {"target_loss": self.task_loss(data[self.target], outputs[self.target]["prediction"])}
        total = terms["target_loss"]
        if self.alpha > 0:
            terms["auxiliary_loss"] = self.task_loss(data[self.auxiliary],
                                                     outputs[self.auxiliary]["prediction"])
            total = total + self.alpha * terms["auxiliary_loss"]
        if self.beta > 0:
            term = self.crossmodal_term
            terms[term] = self.crossmodal_term_value(data, outputs)
            total = total + self.beta * terms[term]
        if self.l2 > 0:
            terms["l2_loss"] = self.l2_penalty()
            total = total + terms["l2_loss"]
        terms["loss"] = total
        return terms, outputs

    def _check_batch(self, data, modalities=None):
        if not isinstance(data, dict):
            raise ValueError("EmoBed batches are dicts {modality: {features, mask, label}}, "
                             f"got {type(data).__name__}")
        for m in modalities or self.active_modalities():
            if m not in data:
                raise ValueError(
                    f"the batch lacks the {m} modality, which this model ({self._mode_text()}) "
                    f"needs; batch has {sorted(data)}. Use emobed_tf.data.pipeline.make_mixed_dataset "
                    "with both modalities, or train the classic system (alpha=beta=0)")

    def _mode_text(self):
        return f"target={self.target}, alpha={self.alpha}, beta={self.beta}"

    # -- steps --------------------------------------------------------------

    # Keras calls train_step/test_step with the backend's own signature: (data) under
    # TensorFlow and torch, (state, data) -> (logs, state) under JAX, where the step
    # must be a pure function of the variables' values. Each backend's step follows
    # Keras' guide for it ("Customizing what happens in fit()").

    def compile(self, *args, **kwargs):
        """Keras' ``compile``, then the optimizer's slots built at once.

        Built here, outside the training step, the slots exist before
        TensorFlow traces the step, which it then traces once instead of
        twice (a ``tf.function`` that creates variables is traced again).
        Slots cover every trainable variable in model order, as Keras
        builds them when it reloads a ``.keras`` file, although each mode
        applies gradients to its active sub-networks only.
        """
        super().compile(*args, **kwargs)
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """What Keras' own does on ``.keras`` loading, through :meth:`compile`."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def train_step(self, *args):
        backend = keras.backend.backend()
        if backend == "jax":
            return self._jax_train_step(*args)
        if backend == "torch":
            return self._torch_train_step(*args)
        if backend == "tensorflow":
            return self._tf_train_step(*args)
        raise NotImplementedError(f"EmoBed trains with tensorflow, jax or torch, not {backend!r}")

    def test_step(self, *args):
        if keras.backend.backend() == "jax":
            state, data = args
            trainable, non_trainable, metrics_values = state
            mapping = (list(zip(self.trainable_variables, trainable))
                       + list(zip(self.non_trainable_variables, non_trainable))
                       + list(zip(self.metrics_variables, metrics_values)))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                logs = self._test_logs(data)
            metrics_values = [scope.get_current_value(v) for v in self.metrics_variables]
            return logs, (trainable, non_trainable, metrics_values)
        return self._test_logs(args[0])

    def _tf_train_step(self, data):
        import tensorflow as tf

        if not self.optimizer.built:  # an optimizer set after compile: see compile
            self.optimizer.build(self.trainable_variables)
        variables = self.active_trainable_variables()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms, outputs = self.compute_terms(data, training=True)
            # gradients are summed over replicas: scale for the global mean
            scaled = self.optimizer.scale_loss(terms["loss"] / replicas)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return self._update(terms, data[self.target], outputs[self.target]["prediction"])

    def _torch_train_step(self, data):
        """The torch step: ``zero_grad``, Eq. (8), ``backward``, Adam on the active sub-networks."""
        import torch

        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        self.zero_grad()
        terms, outputs = self.compute_terms(data, training=True)
        self.optimizer.scale_loss(terms["loss"]).backward()
        variables = self.active_trainable_variables()
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            self.optimizer.apply(grads, variables)
        return self._update({k: v.detach() for k, v in terms.items()}, data[self.target],
                            outputs[self.target]["prediction"].detach())

    def _jax_train_step(self, state, data):
        """The stateless JAX step: Eq. (8), its gradient, Adam, the trackers."""
        import jax

        trainable, non_trainable, optimizer_values, metrics_values = state

        def loss_fn(trainable_values):
            mapping = (list(zip(self.trainable_variables, trainable_values))
                       + list(zip(self.non_trainable_variables, non_trainable)))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                terms, outputs = self.compute_terms(data, training=True)
            new_non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
            return terms["loss"], (terms, outputs[self.target]["prediction"], new_non_trainable)

        # sub-networks the mode does not use get zero gradients: Adam leaves them unchanged
        (_, (terms, prediction, non_trainable)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(trainable)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads,
                                                                     trainable)
        with keras.StatelessScope(
                state_mapping=list(zip(self.metrics_variables, metrics_values))) as scope:
            logs = self._update(terms, data[self.target], prediction)
        metrics_values = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, optimizer_values, metrics_values)

    def _test_logs(self, data):
        self._check_batch(data, [self.target])
        batch = data[self.target]
        pred = self.forward(self.target, batch, training=False)["prediction"]
        terms = {"target_loss": self.task_loss(batch, pred)}
        terms["loss"] = terms["target_loss"]
        return self._update(terms, batch, pred)

    def _update(self, terms, batch, prediction):
        for name, value in terms.items():
            if name in self.trackers:
                self.trackers[name].update_state(value)
        if self.task == "regression":
            self.score.update_state(batch["label"], prediction, batch.get("mask"))
        else:
            self.score.update_state(batch["label"], prediction)
        return {m.name: m.result() for m in self.metrics if m.name in terms or m is self.score}

    # -- serialisation ------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "task": self.task, "num_outputs": self.num_outputs, "input_dims": self.input_dims,
            "target": self.target, "alpha": self.alpha, "beta": self.beta, "l2": self.l2,
            "encoder_layers": self.encoder_layers, "encoder_units": self.encoder_units,
            "shared_layers": self.shared_layers, "shared_units": self.shared_units,
            "dropout": self.dropout, "dense_dropout": self.dense_dropout,
            "regression_loss": self.regression_loss,
            "triplet_form": self.triplet_form, "triplet_margin": self.triplet_margin,
            "triplet_reduction": self.triplet_reduction, "triplet_space": self.triplet_space,
            "triplet_frame_stride": self.triplet_frame_stride,
            "triplet_thresholds": list(self.triplet_thresholds),
            "output_names": self.output_names_,
            "crossmodal_loss": self.crossmodal_loss, "temperature": self.temperature,
            "encoder_type": self.encoder_type, "dense_activation": self.dense_activation,
            "aux_warmup_epochs": self.aux_warmup_epochs, "logits_head": self.logits_head,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # a file saved before logits_head existed has a softmax head: it keeps it; one saved
        # before triplet_space existed measured its triplet distances on the raw embeddings
        return cls(**{"logits_head": False, "triplet_space": "raw", **config})


def load_model(path: str, compile: bool = True) -> EmoBed:
    """Loads a saved ``.keras`` EmoBed model (this module registers its classes).

    ``compile=False`` skips the optimizer: what scoring and export need, and
    what lets a file saved under another backend load here (a torch-trained
    file names torch's optimizer class).
    """
    return keras.models.load_model(path, compile=compile)
