"""Configuration as data: frozen dataclasses with the paper's defaults.

Every setting is declared once, here, with its help text and its check in
the field's metadata (:func:`setting`). The command-line flags of every CLI
(``emobed_tf.cli``), the hyperparameter names of ``tuning`` and
``--hparams`` files (:func:`hparam_fields`) and the validation of a
configuration (on construction, so a bad value never reaches a model) are
generated from these fields.

``DATASETS`` is the registry behind ``--dataset``: each preset holds the
task and the paper's (or a documented) default model, data and loss
settings for that corpus.

>>> cfg = default_config("omg", out="runs/omg", target="video")
>>> cfg.model.encoder_layers, cfg.loss.alpha, cfg.loss.beta   # paper Sec. 4.2, Fig. 7
(1, 0.5, 0.8)
>>> apply_hparams(cfg, {"beta": 0.3, "encoder_units": 64}).model.encoder_units
64
>>> LossConfig(alpha=-1.0)
Traceback (most recent call last):
...
emobed_tf.configs.ConfigError: alpha must be a finite number >= 0, got -1.0
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

from emobed_tf.errors import EmobedError


MODES = ("classic", "joint", "triplet", "emobed")
OMG_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
EGEMAPS_DIM = 88  # openSMILE eGeMAPSv02 functionals, the paper's audio features
VGGFACE_FC7_DIM = 4096  # VGG-Face fc7, the paper's video features
MODALITIES = ("audio", "video")


def auxiliary_of(target: str) -> str:
    """The other modality: the auxiliary one of a ``target``.

    >>> auxiliary_of("audio")
    'video'
    """
    return [m for m in MODALITIES if m != target][0]
REGRESSION_LOSSES = ("ccc", "mse")
TRIPLET_FORMS = ("paper", "hinge", "soft")
TRIPLET_REDUCTIONS = ("mean", "sum")
TRIPLET_SPACES = ("auto", "raw", "unit")  # auto: see triplet_space_for
BOUNDED_ACTIVATIONS = ("tanh",)  # dense activations whose outputs are bounded
CROSSMODAL_LOSSES = ("triplet", "prototype")
STRATEGIES = ("none", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
BACKENDS = ("tensorflow", "jax", "torch")  # Keras 3 backends EmoBed trains with
CACHE_MODES = ("auto", "memory", "none")  # see emobed_tf.data.pipeline.PipelineOptions
NORMALIZATIONS = ("corpus", "speaker")  # see emobed_tf.data.pipeline.PipelineOptions
ENCODER_TYPES = ("auto", "dense", "gru")  # auto: see emobed_tf.model.emobed.resolve_encoder_type
DENSE_L2 = 1e-2  # the dense form's L2 weight, chosen on dev speakers (dense_screen.md)
SELECT_ON = ("auto", "score", "loss", "last")  # see emobed_tf.model.metrics.selection
# How the dense form (pooled features) trains unless a flag says otherwise: whole-set batches
# (1024 items hold a fold of a corpus like RAVDESS) for 300 epochs, the last one kept. Chosen on
# held-out dev speakers (benchmarks/results/dense_screen_nested.md); the GRU form keeps the
# paper's minibatches and dev-score early stopping (the preset's batch size and epochs).
DENSE_RECIPE = {"batch_size": 1024, "epochs": 300, "select_on": "last"}
DENSE_ACTIVATIONS = ("relu", "tanh", "gelu", "elu", "linear")  # = emobed_tf.model.emobed's
SHARED_SPEAKERS = ("auto", "yes", "no")  # see emobed_tf.data.speakers.speaker_fold_sources


def triplet_space_for(encoder_type: str, activation: str = "relu") -> str:
    """Where ``--triplet-space auto`` measures the triplet distances: ``raw`` where the
    embeddings are bounded (the GRU form's tanh outputs, a dense form with tanh), so Eq. (6)
    is kept exactly as the paper wrote it; ``unit`` (each embedding scaled to unit L2 norm,
    distances in [0, 2]) where they are not (the dense form with ReLU, GELU, ELU or no
    activation), because there ``d+ - d-`` has no lower bound and the term can fall without
    limit as the embeddings grow. The one place this is decided.

    >>> triplet_space_for("gru"), triplet_space_for("dense", "relu"), triplet_space_for("dense", "tanh")
    ('raw', 'unit', 'raw')
    """
    if encoder_type == "gru" or activation in BOUNDED_ACTIVATIONS:
        return "raw"
    return "unit"


class ConfigError(EmobedError, ValueError):
    """A setting has a value the package cannot train with; the message names it."""


# --------------------------------------------------------------------------
# checks: each returns None when the value is fine, else what it must be


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive_int(v):
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 1 \
        else "an integer >= 1"


def nonneg_int(v):
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 \
        else "an integer >= 0"


def positive_float(v):
    return None if _is_number(v) and math.isfinite(v) and v > 0 else "a finite number > 0"


def nonneg_float(v):
    return None if _is_number(v) and math.isfinite(v) and v >= 0 else "a finite number >= 0"


def fraction(v):
    return None if _is_number(v) and 0 <= v < 1 else "a number in [0, 1)"


def finite_floats(v):
    ok = isinstance(v, tuple) and v and all(_is_number(x) and math.isfinite(x) for x in v)
    return None if ok else "one or more finite numbers"


def strings(v):
    return None if isinstance(v, tuple) and all(isinstance(x, str) and x for x in v) \
        else "a list of names"


def setting(default, help: str, *, check: Callable | None = None, choices=None,
            flag: str | None = None, aliases=(), hparam: bool = True, cli: bool = True,
            item=str, required: bool = False, cli_check: Callable | None = None):
    """A dataclass field that carries its CLI flag, help text and check.

    Args:
        default: the paper's (or the package's documented) default.
        help: the flag's help text.
        check: a function returning ``None`` for a good value, else a phrase
            saying what the value must be (e.g. ``"an integer >= 1"``).
        choices: the allowed values of a string setting.
        flag: the flag name (default ``--field-name``); ``aliases``: older names.
        hparam: whether ``tuning`` / ``--hparams`` may set it.
        cli: whether it gets a flag at all.
        item: element type of a tuple setting (its flag takes ``a,b,c``).
        required: a flag every CLI that has it must be given.
        cli_check: a stricter check for a value given as a flag (e.g. ``0`` as a
            default that means "the same as another setting" but not as a flag).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "check": check, "choices": tuple(choices) if choices else None,
        "flag": flag, "aliases": tuple(aliases), "hparam": hparam, "cli": cli, "item": item,
        "required": required, "cli_check": cli_check})


def check_value(f: dataclasses.Field, value) -> str | None:
    """``None`` when ``value`` suits the field ``f``, else the reason."""
    md = f.metadata
    if md.get("choices") and value not in md["choices"]:
        return f"one of {', '.join(map(str, md['choices']))}"
    if md.get("check"):
        return md["check"](value)
    return None


def validate(obj) -> None:
    """Raises :class:`ConfigError` naming the first field of ``obj`` with a bad value."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        why = check_value(f, value)
        if why:
            raise ConfigError(f"{f.name} must be {why}, got {value!r}")


class _Validated:
    def __post_init__(self):
        validate(self)



@dataclasses.dataclass(frozen=True)
class ModelConfig(_Validated):
    """Sizes of f_A / f_V (encoder) and of the shared network f.

    Paper (Sec. 4.2): RECOLA 2 + 2 GRU layers of 120 units; OMG-Emotion one
    layer each. ``encoder_type`` ``auto`` is resolved where the model is
    built: ``dense`` when every item of the data read has one frame (pooled
    features), else ``gru``.
    """

    encoder_layers: int = setting(2, "GRU layers of each modality's encoder f_A / f_V",
                                  check=positive_int)
    encoder_units: int = setting(120, "units of each encoder GRU layer", check=positive_int)
    shared_layers: int = setting(2, "GRU layers of the shared network f", check=positive_int)
    shared_units: int = setting(120, "units of each shared GRU layer", check=positive_int)
    dropout: float = setting(0.0, "input dropout of every GRU layer", check=fraction)
    dense_dropout: float = setting(0.5, "input dropout of every Dense layer of --encoder-type "
                                   "dense (chosen on dev speakers, see "
                                   "benchmarks/results/dense_screen.md)", check=fraction)
    encoder_type: str = setting("auto", "form of the encoders and the shared network: gru (the "
                                "paper's), dense (frame-wise Dense layers; the shared network of "
                                "a classification model takes the mean of the valid frames), or "
                                "auto (dense when every item has one frame, e.g. pooled "
                                "features, else gru)", choices=ENCODER_TYPES)
    dense_activation: str = setting("relu", "activation of the Dense layers of --encoder-type "
                                    "dense", choices=DENSE_ACTIVATIONS)


@dataclasses.dataclass(frozen=True)
class LossConfig(_Validated):
    """Weights and forms of the loss terms of Eq. (8).

    ``alpha``/``beta`` are the EmoBed values; the mode zeroes them
    (``classic``: both, ``joint``: beta, ``triplet``: alpha).
    """

    alpha: float = setting(0.5, "weight of the auxiliary modality's loss (Eq. 8)",
                           check=nonneg_float)
    beta: float = setting(0.5, "weight of the crossmodal term (Eq. 8)", check=nonneg_float)
    l2: float = setting(1e-4, "weight of the L2 term on kernels (paper: 1e-4); the GRU form's "
                        "(--encoder-type gru)", check=nonneg_float)
    dense_l2: float = setting(DENSE_L2, "weight of the L2 term on kernels when the encoders "
                              "are dense (--encoder-type dense, or auto on one-frame features; "
                              "chosen on dev speakers, see benchmarks/results/dense_screen.md)",
                              check=nonneg_float)
    regression_loss: str = setting("ccc", "regression loss: 1 - CCC (paper) or masked MSE",
                                   choices=REGRESSION_LOSSES)
    triplet_form: str = setting("paper", "triplet form: paper (Eq. 6, no margin), hinge "
                                "(max(0, d+ - d- + margin)) or soft (softplus)",
                                choices=TRIPLET_FORMS)
    triplet_margin: float = setting(0.0, "margin of the hinge triplet", check=nonneg_float)
    triplet_reduction: str = setting("mean", "how anchors' triplet losses are combined",
                                     choices=TRIPLET_REDUCTIONS)
    triplet_space: str = setting("auto", "where the triplet distances are measured: raw "
                                 "embeddings (Eq. 6 as written), unit (embeddings scaled to "
                                 "unit L2 norm: the term stays within [-2, 2]) or auto: raw "
                                 "where embeddings are bounded (GRU, dense tanh), unit where "
                                 "they are not (dense ReLU)", choices=TRIPLET_SPACES)
    triplet_frame_stride: int = setting(10, "regression: every n-th frame is a triplet anchor",
                                        check=positive_int)
    triplet_thresholds: tuple = setting((0.0,), "regression: thresholds that bin the first "
                                        "label dimension into triplet classes",
                                        check=finite_floats, item=float)
    crossmodal_loss: str = setting("triplet", "the beta-weighted crossmodal term: triplet (the "
                                   "paper's batch-hard triplet, Eq. 6) or prototype (each "
                                   "modality classified by the other's class centroids in the "
                                   "batch)", choices=CROSSMODAL_LOSSES)
    temperature: float = setting(0.1, "softmax temperature of the prototype loss",
                                 check=positive_float)
    aux_warmup_epochs: int = setting(0, "train the shared network on the auxiliary modality "
                                     "alone for the first K epochs (its loss + L2; the target "
                                     "encoder is not updated), then Eq. (8); warm-up epochs are "
                                     "never the best epoch. Needs alpha > 0 or beta > 0",
                                     check=nonneg_int)


@dataclasses.dataclass(frozen=True)
class DataConfig(_Validated):
    """Batching of the mixed pipeline.

    ``train_speakers``, ``dev_speakers``, ``test_speakers``: speaker-independent
    partitions assigned at read time (``emobed_tf.crossval`` sets them per
    fold): every split reads all shards and keeps these speakers' items;
    standardisation statistics come from the training speakers. Empty: the
    splits written at extraction. The auxiliary modality never sees a dev or
    test speaker.
    """

    batch_size: int = setting(0, "target-modality examples per batch (default: 1024 for the "
                              "dense form, i.e. whole-set batches on a corpus of RAVDESS's "
                              "size; the preset's, 64 for most, for the GRU form)",
                              check=nonneg_int, cli_check=positive_int)
    auxiliary_batch_size: int = setting(0, "auxiliary examples per batch (default: the same as "
                                        "--batch-size)", check=nonneg_int, cli_check=positive_int,
                                        aliases=("--aux-batch-size",))
    eval_batch_size: int = setting(64, "batch size of dev/test prediction", check=positive_int)
    window: int = setting(0, "regression: training windows of this many frames (0: whole "
                          "sequences)", check=nonneg_int)
    window_shift: int = setting(0, "regression: shift between training windows in frames "
                                "(0: the window)", check=nonneg_int)
    shuffle_buffer: int = setting(4096, "examples (windows) in the shuffle buffer",
                                  check=positive_int)
    label_delay_s: float = setting(0.0, "regression: annotation delay compensation in seconds",
                                   check=nonneg_float, aliases=("--label-delay",))
    label_dims: tuple = setting((), "regression dimensions to predict, e.g. arousal or "
                                "arousal,valence (default: all)", check=strings, hparam=False)
    cache: str = setting("auto", "keep decoded training/dev data in memory: auto (when the "
                         "split's shards total at most --cache-limit-mb), memory (always) or "
                         "none (stream every epoch)", choices=CACHE_MODES)
    cache_limit_mb: int = setting(1024, "the auto cache's size limit in MiB", check=nonneg_int)
    labels_per_class: int = setting(0, "label scarcity: keep K labelled training items of "
                                    "the target per class and training speaker, drawn with "
                                    "--seed (the auxiliary keeps all its labels; the "
                                    "standardisation still uses every training item); 0: all. "
                                    "Classification on the in-memory path", check=nonneg_int)
    normalize: str = setting("corpus", "feature standardisation: corpus (the training set's "
                             "mean/std) or speaker (each speaker's own mean/std over all its "
                             "unlabelled items, test speakers' included: transductive; served "
                             "models then take the speaker's statistics)",
                             choices=NORMALIZATIONS)
    train_speakers: tuple = setting((), "speaker-independent training speakers (default: "
                                    "every speaker not held out)", check=strings, hparam=False)
    dev_speakers: tuple = setting((), "speakers whose target items are the dev partition",
                                  check=strings, hparam=False)
    test_speakers: tuple = setting((), "speakers whose target items are the test partition",
                                   check=strings, hparam=False)
    shared_speakers: str = setting("auto", "whether the auxiliary corpus records the target's "
                                   "speakers, so a held-out target speaker must be found and "
                                   "left out there too: yes, no, or auto (yes when the "
                                   "auxiliary comes from another data folder whose manifest "
                                   "carries the same corpus name)",
                                   choices=SHARED_SPEAKERS, hparam=False)

    @property
    def speaker_folds(self) -> bool:
        """Whether the partitions are assigned by speaker at read time."""
        return bool(self.train_speakers or self.dev_speakers or self.test_speakers)


def _dataset_check(v):
    return None if v in DATASETS else f"one of {', '.join(sorted(DATASETS))}"


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Validated):
    """Everything one training run needs; saved as ``RUN_DIR/config.json``."""

    dataset: str = setting("", "registered data set (see README)", check=_dataset_check,
                           hparam=False, required=True)
    out: str = setting("", "run folder", hparam=False, cli=False)
    data_dir: str = setting("", "folder with manifest.json and shards", hparam=False)
    audio_dir: str = setting("", "audio from another data folder (corpus)", hparam=False)
    video_dir: str = setting("", "video from another data folder (corpus)", hparam=False)
    target: str = setting("audio", "the modality the model is for (the other one is the "
                          "auxiliary)", choices=MODALITIES, hparam=False)
    mode: str = setting("emobed", "classic (alpha=beta=0), joint (beta=0), triplet (alpha=0), "
                        "emobed", choices=MODES, hparam=False, cli=False)
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    learning_rate: float = setting(1e-3, "Adam learning rate", check=positive_float)
    epochs: int = setting(0, "maximum training epochs (default: 300 for the dense form; the "
                          "preset's, 50 for most, for the GRU form)", check=nonneg_int,
                          cli_check=positive_int)
    patience: int = setting(10, "early stopping patience in epochs", check=positive_int)
    select_on: str = setting("auto", "what early stopping and the kept (best) epoch select "
                             "on: score (the target's dev macro-F1, or mean CCC; the paper's), "
                             "loss (the target's dev loss, val_target_loss, lowest kept), last "
                             "(no early stopping: all --epochs, the last kept; dev is only "
                             "reported) or auto (last for the dense form, score for the GRU "
                             "form; chosen on dev speakers, "
                             "benchmarks/results/dense_screen_nested.md)",
                             choices=SELECT_ON)
    checkpoint_every: int = setting(0, "epochs between checkpoints (the resume points) and, "
                                    "with --select-on last, dev evaluations: 0 (auto) is every "
                                    "epoch for streamed data and a tenth of --epochs for data "
                                    "held in memory", check=nonneg_int, hparam=False)
    seed: int = setting(0, "seed of Python, numpy, Keras and the data order", check=nonneg_int,
                        hparam=False)
    verbose: int = setting(1, "Keras progress: 0 silent, 1 progress bar, 2 a line per epoch",
                           choices=(0, 1, 2), hparam=False)
    strategy: str = setting("none", "tf.distribute: mirrored (devices of one machine) or "
                            "multiworker (machines listed in TF_CONFIG; each worker writes its "
                            "own --out)", choices=STRATEGIES, hparam=False)
    precision: str = setting("float32", "Keras dtype policy; mixed_float16 (with loss scaling) "
                             "or mixed_bfloat16 speed up GPUs", choices=PRECISIONS, hparam=False)
    backend: str = setting("tensorflow", "Keras backend that trains the model (default: "
                           "$KERAS_BACKEND, else tensorflow); the tf.data pipeline feeds both, "
                           "and a .keras file of either loads under the other",
                           choices=BACKENDS, hparam=False)

    def __post_init__(self):
        validate(self)
        if self.backend != "tensorflow" and self.strategy != "none":
            raise ConfigError(f"strategy {self.strategy!r} is a tf.distribute strategy: it "
                              "needs backend 'tensorflow'")
        if self.loss.aux_warmup_epochs and not (self.alpha > 0 or self.beta > 0):
            raise ConfigError(f"aux_warmup_epochs {self.loss.aux_warmup_epochs} needs the "
                              f"auxiliary modality, which mode {self.mode} with alpha="
                              f"{self.alpha:g}, beta={self.beta:g} never trains on (use "
                              "--aux-warmup-epochs 0, or a joint, triplet or emobed mode)")
        if self.epochs and self.loss.aux_warmup_epochs >= self.epochs:  # 0: auto, checked
            # when resolved (resolved())
            raise ConfigError(f"aux_warmup_epochs ({self.loss.aux_warmup_epochs}) must be "
                              f"smaller than epochs ({self.epochs}): only epochs after the "
                              "warm-up can be the best epoch")

    @property
    def alpha(self) -> float:
        return effective_weights(self.mode, self.loss.alpha, self.loss.beta)[0]

    @property
    def beta(self) -> float:
        return effective_weights(self.mode, self.loss.alpha, self.loss.beta)[1]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["effective_alpha"] = self.alpha
        d["effective_beta"] = self.beta
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TrainConfig":
        d = {k: v for k, v in d.items() if not k.startswith("effective_")}
        if isinstance(d.get("model"), Mapping) and "encoder_type" not in d["model"]:
            # written before encoder_type existed: every model was a GRU stack
            d = {**d, "model": {**d["model"], "encoder_type": "gru"}}
        if isinstance(d.get("loss"), Mapping) and "dense_l2" not in d["loss"]:
            # written before dense_l2 existed: a dense model trained with l2, so a run of
            # then is never taken for one of today's dense default
            d = {**d, "loss": {**d["loss"], "dense_l2": d["loss"].get("l2", LossConfig.l2)}}
        if isinstance(d.get("loss"), Mapping) and "triplet_space" not in d["loss"]:
            # written before triplet_space existed: distances between the raw embeddings
            d = {**d, "loss": {**d["loss"], "triplet_space": "raw"}}
        if "select_on" not in d:
            # written before select_on existed: every run selected its epoch on the dev score
            d = {**d, "select_on": "score"}
        # batch size, epochs and select_on written before their auto defaults existed are
        # explicit values: the runs of then trained with them, whatever the encoder type
        parts = {name: _from_dict(klass, d.get(name, {})) for name, klass in SECTIONS.items()
                 if name != "top"}
        return cls(**{**d, **parts})

    def save(self, path: str) -> None:
        from emobed_tf import io

        io.write_json(path, self.to_json())


SECTIONS = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig, "top": TrainConfig}


def _from_dict(klass, d: Mapping[str, Any]):
    """``klass(**d)`` with JSON lists turned back into tuples."""
    kwargs = {}
    for f in dataclasses.fields(klass):
        if f.name in d:
            v = d[f.name]
            kwargs[f.name] = tuple(v) if isinstance(f.default, tuple) and isinstance(v, list) \
                else v
    return klass(**kwargs)


def scalar_fields(section: str):
    """The settings of ``section`` (``model``, ``loss``, ``data``, ``top``), sub-configs left out."""
    return [f for f in dataclasses.fields(SECTIONS[section]) if f.name not in SECTIONS]


def hparam_fields() -> dict:
    """``{name: section}`` of the settings ``tuning`` and ``--hparams`` files may set.

    >>> hparam_fields()["beta"], hparam_fields()["encoder_units"], hparam_fields()["epochs"]
    ('loss', 'model', 'top')
    """
    return {f.name: section for section in SECTIONS for f in scalar_fields(section)
            if f.metadata.get("hparam")}


def _coerce(f: dataclasses.Field, value, where: str):
    """``value`` converted to the field's type, or a ConfigError naming ``where``."""
    kind = type(f.default)
    bad = ConfigError(f"{where}: {f.name} must be {kind.__name__ if kind is not tuple else 'a list'}"
                      f", got {value!r}")
    if isinstance(value, bool) and kind is not bool:
        raise bad
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if not isinstance(value, kind):
        raise bad
    return value


def apply_hparams(cfg: "TrainConfig", hparams: Mapping[str, Any],
                  where: str = "hyperparameters") -> "TrainConfig":
    """``cfg`` with hyperparameters set by name (the names ``tuning.search`` writes).

    Unknown names, values of the wrong type and values that fail a setting's
    check raise :class:`ConfigError` naming ``where`` (e.g. the file).
    """
    fields = hparam_fields()
    unknown = sorted(set(hparams) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown hyperparameters {unknown}; known: {sorted(fields)}")
    by_name = {f.name: f for section in SECTIONS for f in scalar_fields(section)}
    parts = {s: {} for s in SECTIONS}
    for name, value in hparams.items():
        parts[fields[name]][name] = _coerce(by_name[name], value, where)
    try:
        return dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, **parts["model"]),
            loss=dataclasses.replace(cfg.loss, **parts["loss"]),
            data=dataclasses.replace(cfg.data, **parts["data"]), **parts["top"])
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def effective_weights(mode: str, alpha: float, beta: float) -> tuple:
    """(alpha, beta) that the mode trains with: the paper's four systems."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return {"classic": (0.0, 0.0), "joint": (alpha, 0.0), "triplet": (0.0, beta),
            "emobed": (alpha, beta)}[mode]


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    """A registered ``--dataset``: task and default settings.

    Args:
        name: the ``--dataset`` value.
        task: classification / regression (``None``: read from the manifest).
        description: one line for ``--help``.
        default_dir: default ``--data-dir`` (relative paths: current dir).
        model, data, loss: defaults.
        beta_by_target: the paper's best β per target modality, if known.
        epochs, patience: training length defaults of the GRU form (``data.batch_size``
            is its batch size).
        dense: batch size, epochs and select_on of the dense form (:data:`DENSE_RECIPE`).
        make_hint: how to create the data when it is absent.
        generated: a built-in corpus generated on first use.
    """

    name: str
    task: str | None
    description: str
    default_dir: str = ""
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    beta_by_target: Mapping[str, float] = dataclasses.field(default_factory=dict)
    epochs: int = 50
    patience: int = 10
    dense: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(DENSE_RECIPE))
    make_hint: str = ""
    generated: bool = False


_OMG_MODEL = ModelConfig(encoder_layers=1, encoder_units=120, shared_layers=1, shared_units=120)
_RECOLA_MODEL = ModelConfig(encoder_layers=2, encoder_units=120, shared_layers=2, shared_units=120)

DATASETS = {
    "omg": DatasetPreset(
        "omg", "classification", "OMG-Emotion, 7 classes, utterance level (paper Sec. 4.1.2)",
        default_dir="data/omg", model=_OMG_MODEL,
        data=DataConfig(batch_size=64, eval_batch_size=128),
        # Paper Fig. 7: best alpha 0.5 for both targets; beta 0.3 (audio), 0.8 (video).
        loss=LossConfig(alpha=0.5, beta=0.3), beta_by_target={"audio": 0.3, "video": 0.8},
        make_hint="python -m tfrecords_tools.extract --corpus omg --csv-dir OMG_CSV_DIR "
                  "--clips-dir OMG_CLIPS_DIR --vggface-weights VGGFACE_WEIGHTS.h5 --out data/omg"),
    "recola": DatasetPreset(
        "recola", "regression", "RECOLA / AVEC 2016, arousal and valence at 40 ms (Sec. 4.1.1)",
        default_dir="data/recola", model=_RECOLA_MODEL,
        data=DataConfig(batch_size=4, eval_batch_size=9, window=300, window_shift=150,
                        label_delay_s=2.4),
        # Paper Fig. 5b: beta 1.0 best for arousal; alpha for RECOLA is not
        # reported, 0.5 is this package's choice (tune it with tuning.search).
        loss=LossConfig(alpha=0.5, beta=1.0),
        make_hint="python -m tfrecords_tools.extract --corpus avec2016 --avec-dir AVEC2016_DIR "
                  "--out data/recola"),
    "demo": DatasetPreset(
        "demo", "classification",
        "built-in SIMULATED 7-class audiovisual corpus shaped like OMG-Emotion",
        model=_OMG_MODEL, data=DataConfig(batch_size=64, eval_batch_size=256),
        loss=LossConfig(alpha=0.5, beta=0.3), epochs=30, patience=8, generated=True,
        # shorter than the dense recipe's 300 epochs, so the demo runs in minutes
        dense={**DENSE_RECIPE, "epochs": 100}),
    "demo-recola": DatasetPreset(
        "demo-recola", "regression",
        "built-in SIMULATED arousal/valence corpus shaped like RECOLA (40 ms frames)",
        model=_RECOLA_MODEL,
        data=DataConfig(batch_size=4, eval_batch_size=8, window=300, window_shift=150,
                        label_delay_s=2.4),
        loss=LossConfig(alpha=0.5, beta=1.0), epochs=20, patience=6, generated=True),
    "custom": DatasetPreset(
        "custom", None, "your own TFRecords: task, labels and dims from DATA_DIR/manifest.json",
        model=_OMG_MODEL, data=DataConfig(batch_size=64, eval_batch_size=64)),
}


def preset_for(name: str) -> DatasetPreset:
    """The registered preset ``name`` (a ConfigError lists the registered ones)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}")
    return DATASETS[name]


def default_config(dataset: str, out: str, target: str = "audio", mode: str = "emobed",
                   **overrides) -> TrainConfig:
    """The preset's defaults for ``dataset`` and ``target``, then ``overrides``.

    Batch size, epochs and select_on stay ``auto`` (0, 0, ``"auto"``): what they are
    depends on the encoder type, known once the data is read (:func:`resolved`).
    """
    preset = preset_for(dataset)
    loss = preset.loss
    if target in preset.beta_by_target:
        loss = dataclasses.replace(loss, beta=preset.beta_by_target[target])
    cfg = TrainConfig(dataset=dataset, out=out, target=target, mode=mode, model=preset.model,
                      loss=loss, data=dataclasses.replace(preset.data, batch_size=0),
                      epochs=0, patience=preset.patience)
    return dataclasses.replace(cfg, **overrides)


def training_defaults(dataset: str, encoder_type: str) -> dict:
    """Batch size, epochs and select_on of ``dataset``'s preset for a model of
    ``encoder_type`` (``dense`` or ``gru``): what ``auto`` (0) means.

    >>> training_defaults("omg", "gru")
    {'batch_size': 64, 'epochs': 50, 'select_on': 'score'}
    >>> training_defaults("omg", "dense") == DENSE_RECIPE
    True
    """
    preset = preset_for(dataset)
    if encoder_type == "dense":
        return dict(preset.dense)
    if encoder_type == "gru":
        return {"batch_size": preset.data.batch_size, "epochs": preset.epochs,
                "select_on": "score"}
    raise ValueError(f"encoder_type must be dense or gru, got {encoder_type!r}")


def resolved(cfg: TrainConfig, encoder_type: str) -> TrainConfig:
    """``cfg`` with every ``auto`` setting decided, for data whose ``auto`` encoder type is
    ``encoder_type`` (``dense`` or ``gru``, see ``emobed_tf.model.emobed.resolve_encoder_type``).

    An explicit ``--encoder-type`` wins over ``encoder_type``; batch size, epochs and
    select_on left at ``auto`` take :func:`training_defaults` of the type the model has;
    ``triplet_space`` ``auto`` takes :func:`triplet_space_for` the type (``raw`` for a run
    without a triplet term); values given stay as given.

    >>> cfg = default_config("omg", out="unused")
    >>> r = resolved(cfg, "dense")
    >>> r.model.encoder_type, r.data.batch_size, r.epochs, r.select_on
    ('dense', 1024, 300, 'last')
    >>> r = resolved(dataclasses.replace(cfg, epochs=20), "gru")
    >>> r.model.encoder_type, r.data.batch_size, r.epochs, r.select_on
    ('gru', 64, 20, 'score')
    """
    enc = cfg.model.encoder_type if cfg.model.encoder_type != "auto" else encoder_type
    rec = training_defaults(cfg.dataset, enc)
    space = cfg.loss.triplet_space
    if space == "auto":  # no triplet term trains (classic, joint, prototype): nothing to decide
        space = (triplet_space_for(enc, cfg.model.dense_activation)
                 if cfg.beta > 0 and cfg.loss.crossmodal_loss == "triplet" else "raw")
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, encoder_type=enc),
        loss=dataclasses.replace(cfg.loss, triplet_space=space),
        data=dataclasses.replace(cfg.data, batch_size=cfg.data.batch_size or rec["batch_size"]),
        epochs=cfg.epochs or rec["epochs"],
        select_on=rec["select_on"] if cfg.select_on == "auto" else cfg.select_on)
