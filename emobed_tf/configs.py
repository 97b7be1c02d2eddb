"""Configuration as data: frozen dataclasses with the paper's defaults.

``DATASETS`` is the registry behind ``--dataset``: each preset holds the
task and the paper's (or a documented) default model, data and loss
settings for that corpus. The CLI only parses arguments into these.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

MODES = ("classic", "joint", "triplet", "emobed")
OMG_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
EGEMAPS_DIM = 88  # openSMILE eGeMAPSv02 functionals, the paper's audio features
VGGFACE_FC7_DIM = 4096  # VGG-Face fc7, the paper's video features


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of f_A / f_V (encoder) and of the shared network f.

    Paper (Sec. 4.2): RECOLA 2 + 2 GRU layers of 120 units; OMG-Emotion one
    layer each.
    """

    encoder_layers: int = 2
    encoder_units: int = 120
    shared_layers: int = 2
    shared_units: int = 120
    dropout: float = 0.0


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights and forms of the loss terms of Eq. (8).

    ``alpha``/``beta`` are the EmoBed values; the mode zeroes them
    (``classic``: both, ``joint``: beta, ``triplet``: alpha).
    """

    alpha: float = 0.5
    beta: float = 0.5
    l2: float = 1e-4
    regression_loss: str = "ccc"
    triplet_form: str = "paper"
    triplet_margin: float = 0.0
    triplet_reduction: str = "mean"
    triplet_frame_stride: int = 10
    triplet_thresholds: tuple = (0.0,)
    crossmodal_loss: str = "triplet"
    temperature: float = 0.1


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Batching of the mixed pipeline.

    Args:
        batch_size: target-modality examples per batch.
        auxiliary_batch_size: auxiliary examples per batch (0 = same).
        eval_batch_size: batch size for dev/test prediction.
        window, window_shift: training windows in frames (regression).
        shuffle_buffer: examples in the shuffle buffer.
        label_delay_s: annotation delay compensation (regression), seconds.
        label_dims: regression dimensions to predict (default: all).
        cache: ``"auto"`` keeps a split in memory when its shards total at
            most ``cache_limit_mb`` MiB, ``"memory"`` always, ``"none"``
            streams every epoch (see ``emobed_tf.data.PipelineOptions``).
        cache_limit_mb: the ``"auto"`` threshold.
        train_speakers, dev_speakers, test_speakers: speaker-independent
            partitions assigned at read time (``emobed_tf.crossval`` sets
            them per fold): every split reads all shards and keeps these
            speakers' items; standardisation statistics come from the
            training speakers. Empty: the splits written at extraction.
            The auxiliary modality never sees a dev or test speaker.
    """

    batch_size: int = 64
    auxiliary_batch_size: int = 0
    eval_batch_size: int = 64
    window: int = 0
    window_shift: int = 0
    shuffle_buffer: int = 4096
    label_delay_s: float = 0.0
    label_dims: tuple = ()
    cache: str = "auto"
    cache_limit_mb: int = 1024
    train_speakers: tuple = ()
    dev_speakers: tuple = ()
    test_speakers: tuple = ()

    @property
    def speaker_folds(self) -> bool:
        """Whether the partitions are assigned by speaker at read time."""
        return bool(self.train_speakers or self.dev_speakers or self.test_speakers)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; saved as ``RUN_DIR/config.json``."""

    dataset: str
    out: str
    data_dir: str = ""
    audio_dir: str = ""
    video_dir: str = ""
    target: str = "audio"
    mode: str = "emobed"
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    learning_rate: float = 1e-3
    epochs: int = 50
    patience: int = 10
    seed: int = 0
    verbose: int = 1
    strategy: str = "none"
    precision: str = "float32"

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
        return cls(**{**d, "model": ModelConfig(**d["model"]),
                      "loss": LossConfig(**{**d["loss"],
                                            "triplet_thresholds": tuple(d["loss"]["triplet_thresholds"])}),
                      "data": DataConfig(**{**d["data"], **{
                          k: tuple(d["data"].get(k, ())) for k in (
                              "label_dims", "train_speakers", "dev_speakers",
                              "test_speakers")}})})

    def save(self, path: str) -> None:
        with open(path, "w") as fh:
            json.dump(self.to_json(), fh, indent=1)


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
        epochs, patience: training length defaults.
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
                  "--video-dir OMG_CLIPS_DIR --out data/omg"),
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
        loss=LossConfig(alpha=0.5, beta=0.3), epochs=30, patience=8, generated=True),
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
