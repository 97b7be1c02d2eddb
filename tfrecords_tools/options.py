"""What an extraction reads and how it computes features, as frozen dataclasses.

The library functions of ``tfrecords_tools`` take these (or plain keyword
arguments), never an argparse namespace; ``extract.main`` only parses the
command line into them.

* :class:`CorpusOptions`: which corpus, where it lives, and the label and
  split settings (``--corpus``, ``--csv``, ``--label-map`` ...).
* :class:`AudioOptions`: openSMILE eGeMAPS mode, window and hop, or a pretrained
  speech encoder (``--audio-encoder ct2|hf|keras-hub``), its layer and pooling.
* :class:`VideoOptions`: face sampling, detection, encoder and pooling.

``AudioOptions.fingerprint()`` and ``VideoOptions.fingerprint()`` list every
setting that changes an item's features (for an encoder file, its SHA-256,
not its path): the per-item cache under ``OUT/.work/`` is bound to them, so
a resumed extraction never mixes items computed with other options.

>>> AudioOptions(mode="windowed", window=2.0).fingerprint()["window"]
2.0
>>> AudioOptions(mode="utterance", window=2.0).fingerprint() == AudioOptions().fingerprint()
True
>>> AudioOptions(mode="lld", hop=0.1).dim
25
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import ClassVar

from emobed_tf.configs import EGEMAPS_DIM
from tfrecords_tools.common import (AUDIO_MODES, EGEMAPS_LLD_DIM, OptionsError, file_sha256,
                                    files_sha256)

VIDEO_POOLS = ("mean", "frames", "functionals")
ENCODERS = ("vggface", "keras", "keras-hub", "onnx")
LAYER_POOLS = ("flatten", "avg", "cls")
CHANNEL_ORDERS = ("rgb", "bgr")
INPUT_RANGES = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}
CORPORA = ("omg", "avec2016", "manifest", "ravdess", "images", "openface", "table")
# the flag behind each fingerprint entry, for messages
FLAGS = {"audio_mode": "--audio-mode", "window": "--window", "hop": "--hop",
         "opensmile": "the openSMILE version", "encoder": "--encoder",
         "vggface_weights_sha256": "--vggface-weights (file content)",
         "encoder_model_sha256": "--encoder-model (file content)", "layer": "--layer",
         "layer_pool": "--layer-pool", "input_range": "--input-range", "detect": "--no-detect",
         "fps": "--fps", "max_frames": "--max-frames", "video_pool": "--video-pool",
         "video_window": "--video-window",
         "encoder_config_sha256": "--encoder-model (config files)",
         "image_size": "--image-size", "image_scale": "--image-mean/--image-std (scale)",
         "image_offset": "--image-mean/--image-std (offset)",
         "channel_order": "--channel-order", "onnxruntime": "the onnxruntime version",
         "keras-hub": "the keras-hub version"}


def _ids(value) -> tuple:
    """``"a, b"`` or ``("a", "b")`` -> ``("a", "b")``; None -> ``()``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip())
    return tuple(str(x).strip() for x in value if str(x).strip())


def _positive(value, flag, allow_none=False):
    if value is None and allow_none:
        return
    if value is None or not 0 < value < float("inf"):
        raise OptionsError(f"{flag} {value}: must be a positive number")


AUDIO_ENCODERS = ("egemaps", "keras-hub", "hf", "ct2")
AUDIO_POOLS = ("mean", "mean+std", "frames")
DEFAULT_HOP = 0.04  # eGeMAPS windowed/lld step (s) when --hop is not given
FLAGS.update({"audio_encoder": "--audio-encoder",
              "audio_model_sha256": "--audio-model (weight files)",
              "audio_model_config_sha256": "--audio-model (config files)",
              "audio_layer": "--audio-layer", "audio_pool": "--audio-pool",
              "audio_pad_window": "--audio-no-pad", "model_type": "--audio-model (model type)",
              "audio_noise_snr_db": "--add-noise-snr", "audio_noise_seed": "--noise-seed"})


@dataclasses.dataclass(frozen=True)
class AudioOptions:
    """Speech features of audio items: openSMILE eGeMAPSv02 or a pretrained encoder.

    Args:
        mode: eGeMAPS: ``utterance`` (88 functionals per item), ``windowed``
            (functionals over ``window`` s every ``hop`` s) or ``lld`` (the 25
            low-level descriptors averaged over ``hop`` s steps).
        window: window length (s) of the windowed mode.
        hop: frame step (s) of the windowed and lld modes (None: 0.04), and
            of ``pool="frames"`` with an encoder (None: the encoder's own
            frame rate, e.g. 50 frames/s for Whisper and wav2vec2).
        encoder: ``egemaps`` (openSMILE, the default), or a pretrained speech
            encoder read from the local folder ``model``: ``ct2`` (Whisper in
            CTranslate2 format), ``hf`` (Transformers wav2vec2, HuBERT, WavLM,
            data2vec-audio, Whisper) or ``keras-hub`` (Whisper preset); see
            ``speech_encoders``.
        model: the encoder's local model folder.
        layer: hidden-state indices (``"4"``, ``"-1"``, ``"2,3"`` averaged;
            0 = input embeddings, default the last layer).
        pool: encoders: ``mean`` [1, D], ``mean+std`` [1, 2D] (over the valid
            frames, never padding) or ``frames`` [T, D].
        batch_size: encoder chunks per model call (speed only).
        pad_window: ct2: pad every utterance to Whisper's 30 s window (the
            reference features); False encodes the utterance alone (much
            faster, other features).
        noise_snr: a degraded-speech study: white Gaussian noise mixed into
            every file at this signal-to-noise ratio (dB, against the file's
            mean power) before any feature is computed; None: the audio as is.
        noise_seed: with ``noise_snr``, the noise of a file is drawn from a
            generator seeded by (CRC-32 of its file name, this seed): the same
            noise on every machine and every rerun.

    >>> AudioOptions().job_kwargs()
    {'mode': 'utterance', 'window_s': 4.0, 'hop_s': 0.04}
    >>> AudioOptions(mode="loud")
    Traceback (most recent call last):
    ...
    tfrecords_tools.common.OptionsError: --audio-mode loud: choose among utterance, windowed, lld
    >>> AudioOptions(encoder="whisper")
    Traceback (most recent call last):
    ...
    tfrecords_tools.common.OptionsError: --audio-encoder whisper: choose among egemaps,
    keras-hub, hf, ct2
    """

    mode: str = "utterance"
    window: float = 4.0
    hop: float | None = None
    encoder: str = "egemaps"
    model: str | None = None
    layer: str | None = None
    pool: str = "mean"
    batch_size: int = 8
    pad_window: bool = True
    noise_snr: float | None = None
    noise_seed: int = 0

    def __post_init__(self):
        if self.mode not in AUDIO_MODES:
            raise OptionsError(f"--audio-mode {self.mode}: choose among {', '.join(AUDIO_MODES)}")
        if self.encoder not in AUDIO_ENCODERS:
            raise OptionsError(f"--audio-encoder {self.encoder}: choose among "
                               f"{', '.join(AUDIO_ENCODERS)}")
        if self.pool not in AUDIO_POOLS:
            raise OptionsError(f"--audio-pool {self.pool}: choose among {', '.join(AUDIO_POOLS)}")
        if isinstance(self.layer, (int, tuple, list)):
            object.__setattr__(self, "layer", ",".join(str(i) for i in (
                self.layer if isinstance(self.layer, (tuple, list)) else [self.layer])))
        _positive(self.window, "--window")
        _positive(self.hop, "--hop", allow_none=True)
        _positive(self.batch_size, "--audio-batch", allow_none=False)
        if self.noise_snr is not None and not math.isfinite(float(self.noise_snr)):
            raise OptionsError(f"--add-noise-snr {self.noise_snr}: must be a finite number of dB")
        if self.encoder == "egemaps" and (self.model or self.layer or self.pool != "mean"):
            raise OptionsError("--audio-model/--audio-layer/--audio-pool apply to a pretrained "
                               "--audio-encoder (keras-hub, hf, ct2), not to egemaps")

    @property
    def pretrained(self) -> bool:
        """True for a pretrained speech encoder (anything but openSMILE eGeMAPS)."""
        return self.encoder != "egemaps"

    @property
    def step(self) -> float:
        """eGeMAPS windowed/lld frame step (s)."""
        return DEFAULT_HOP if self.hop is None else float(self.hop)

    @property
    def frame_step_s(self) -> float | None:
        """Seconds between the frames of a sequence this extracts (the manifest's
        ``frame_step_s``), or None when it is not a fixed step the options give
        (one vector per utterance; an encoder's own frame rate).

        >>> AudioOptions(mode="lld", hop=0.1).frame_step_s, AudioOptions().frame_step_s
        (0.1, None)
        """
        if self.pretrained:
            return float(self.hop) if self.pool == "frames" and self.hop is not None else None
        return self.step if self.mode in ("windowed", "lld") else None

    def check(self) -> None:
        """Raises ``face.WeightsError``/``OptionsError`` when the encoder settings cannot work."""
        if self.pretrained:
            self.encoder_info()

    def encoder_info(self) -> dict:
        """``{dim, layers (resolved indices), model_type, ...}`` of the encoder, from its config."""
        from tfrecords_tools import speech_encoders

        info = dict(speech_encoders.model_info(self.encoder, self.model))
        info["layer_ids"] = speech_encoders.parse_layers(self.layer, info["layers"], self.encoder)
        return info

    @property
    def dim(self) -> int:
        """Features per frame: 25 LLDs, 88 functionals, or the encoder's size (x2 for mean+std)."""
        if self.pretrained:
            d = self.encoder_info()["dim"]
            return 2 * d if self.pool == "mean+std" else d
        return EGEMAPS_LLD_DIM if self.mode == "lld" else EGEMAPS_DIM

    def job_kwargs(self) -> dict:
        """Keyword arguments of ``audio_features.extract_audio`` (eGeMAPS) or the encoder jobs."""
        noise = ({} if self.noise_snr is None else
                 {"noise_snr_db": float(self.noise_snr), "noise_seed": int(self.noise_seed)})
        if self.pretrained:
            return {"encoder": self.encoder, "model": self.model, "layer": self.layer,
                    "pool": self.pool, "hop_s": self.hop, "batch_size": int(self.batch_size),
                    "pad_window": bool(self.pad_window), **noise}
        return {"mode": self.mode, "window_s": self.window, "hop_s": self.step, **noise}

    def fingerprint(self) -> dict:
        """Every setting that changes the features (only those the mode uses).

        >>> AudioOptions(mode="lld", hop=0.1).fingerprint()["hop"]
        0.1
        """
        if self.pretrained:
            from tfrecords_tools import speech_encoders

            info = self.encoder_info()
            weights = speech_encoders.weight_files(self.encoder, self.model)
            configs = speech_encoders.config_files(self.encoder, self.model)
            fp = {"audio_encoder": self.encoder, "model_type": info["model_type"],
                  "audio_model_sha256": files_sha256(weights),
                  "audio_model_config_sha256": files_sha256(configs),
                  "audio_layer": list(info["layer_ids"]), "audio_pool": self.pool}
            if self.pool == "frames" and self.hop is not None:
                fp["hop"] = float(self.hop)
            if self.encoder == "ct2":
                fp["audio_pad_window"] = bool(self.pad_window)
            fp[self.encoder] = _version({"ct2": "ctranslate2", "hf": "transformers",
                                         "keras-hub": "keras-hub"}[self.encoder])
            return {**fp, **self._noise_fingerprint()}
        fp = {"audio_mode": self.mode}
        if self.mode == "windowed":
            fp["window"] = float(self.window)
        if self.mode in ("windowed", "lld"):
            fp["hop"] = self.step
        fp["opensmile"] = _version("opensmile")
        return {**fp, **self._noise_fingerprint()}

    def _noise_fingerprint(self) -> dict:
        if self.noise_snr is None:
            return {}
        return {"audio_noise_snr_db": float(self.noise_snr), "audio_noise_seed": int(self.noise_seed)}

    def feature_set(self) -> str:
        """The manifest's description of the features.

        >>> AudioOptions().feature_set()
        'eGeMAPSv02 functionals (utterance)'
        """
        if self.pretrained:
            layers = ",".join(str(i) for i in self.encoder_info()["layer_ids"])
            pool = self.pool + (f" over {self.hop:g} s" if self.pool == "frames" and self.hop
                                else "")
            pad = ", unpadded" if self.encoder == "ct2" and not self.pad_window else ""
            return (f"{self.encoder} {os.path.basename(os.path.normpath(self.model))} "
                    f"layer {layers} ({pool}{pad})")
        if self.mode == "lld":
            return f"eGeMAPSv02 LLDs averaged over {self.step:g} s"
        return f"eGeMAPSv02 functionals ({self.mode})"


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """Face descriptors of video items (and face images).

    Args:
        encoder: ``vggface`` (``vggface_weights``, the keras-vggface VGG16
            ``.h5``), ``keras`` (``encoder_model`` cut at ``layer``),
            ``keras-hub`` (``encoder_model``: a local keras-hub image preset
            folder) or ``onnx`` (``encoder_model``: a local ``.onnx`` file);
            see ``image_encoders``.
        layer: descriptor layer (default ``fc7_relu`` for VGG-Face; keras-hub:
            optional layer name, default the backbone's output; onnx: output
            or tensor name, default the model's first output).
        layer_pool: ``flatten``, ``avg`` (spatial average, or mean over patch
            tokens) or ``cls`` (class token / pooled embedding: keras-hub,
            onnx). None: ``flatten`` for vggface/keras, the model's natural
            pooling for keras-hub/onnx (``image_encoders.default_pool``).
        input_range: keras encoder: ``unit`` [0, 1] or ``symmetric`` [-1, 1].
        image_size, image_mean, image_std, channel_order: keras-hub/onnx
            preprocessing overrides (input (H, W); mean and std on [0, 1]
            pixels, 1 or 3 values; ``rgb``/``bgr``); unset: the preset's
            image converter (keras-hub), the model's input size and [0, 1]
            RGB pixels.
        detect: run MTCNN detection and alignment (False: pre-cropped faces).
        fps: frames sampled per second; ``max_frames``: at most that many.
        pool: ``mean`` per clip, per ``frames``, or ``functionals`` (mean and
            std over ``window`` s every ``hop`` s).

    >>> VideoOptions(encoder="keras", encoder_model="m.keras", layer="feat").check()
    >>> VideoOptions().check()
    Traceback (most recent call last):
    ...
    tfrecords_tools.face.WeightsError: --encoder vggface needs --vggface-weights PATH ...
    """

    encoder: str = "vggface"
    vggface_weights: str | None = None
    encoder_model: str | None = None
    layer: str | None = None
    layer_pool: str | None = None
    input_range: str = "unit"
    detect: bool = True
    fps: float = 5.0
    max_frames: int | None = None
    pool: str = "mean"
    hop: float = 0.04
    window: float = 8.0
    image_size: tuple | None = None
    image_mean: tuple = ()
    image_std: tuple = ()
    channel_order: str | None = None

    def __post_init__(self):
        from tfrecords_tools.image_encoders import parse_floats, parse_size

        for value, allowed, flag in ((self.encoder, ENCODERS, "--encoder"),
                                     (self.layer_pool or "flatten", LAYER_POOLS, "--layer-pool"),
                                     (self.input_range, tuple(INPUT_RANGES), "--input-range"),
                                     (self.pool, VIDEO_POOLS, "--video-pool"),
                                     (self.channel_order or "rgb", CHANNEL_ORDERS,
                                      "--channel-order")):
            if value not in allowed:
                raise OptionsError(f"{flag} {value}: choose among {', '.join(allowed)}")
        object.__setattr__(self, "image_size", parse_size(self.image_size))
        object.__setattr__(self, "image_mean", parse_floats(self.image_mean, "--image-mean"))
        object.__setattr__(self, "image_std", parse_floats(self.image_std, "--image-std"))
        if self.encoder in ("vggface", "keras") and (
                self.image_size or self.image_mean or self.image_std or self.channel_order):
            raise OptionsError("--image-size/--image-mean/--image-std/--channel-order apply to "
                               "--encoder keras-hub or onnx (vggface and keras read their "
                               "input from the model)")
        _positive(self.fps, "--fps")
        _positive(self.hop, "--hop")
        _positive(self.window, "--video-window")
        _positive(self.max_frames, "--max-frames", allow_none=True)

    @property
    def pretrained(self) -> bool:
        """True for the keras-hub and onnx image encoders."""
        return self.encoder in ("keras-hub", "onnx")

    @property
    def layer_name(self) -> str:
        if self.encoder == "onnx" and not self.layer and self.encoder_model:
            from tfrecords_tools.image_encoders import onnx_info

            return onnx_info(self.encoder_model)["output"]
        return self.layer or ("fc7_relu" if self.encoder == "vggface" else "")

    @property
    def pool_name(self) -> str:
        """``layer_pool``, or the encoder's default when unset."""
        if self.layer_pool:
            return self.layer_pool
        if self.pretrained:
            from tfrecords_tools.image_encoders import default_pool

            return default_pool(self.encoder, self.encoder_model, self.layer)
        return "flatten"

    def prep(self):
        """keras-hub/onnx: the resolved ``image_encoders.Prep`` (size, scale, offset ...)."""
        from tfrecords_tools.image_encoders import resolve_prep

        return resolve_prep(self.encoder, self.encoder_model, self.image_size,
                            self.image_mean, self.image_std, self.channel_order, self.layer)

    @property
    def dim(self):
        """Features per face, without running the model where the files tell (None: unknown
        until the first face is encoded)."""
        if self.pretrained:
            from tfrecords_tools.image_encoders import model_dim

            self.check()
            return model_dim(self.encoder, self.encoder_model, self.layer, self.pool_name)
        if self.encoder == "vggface" and self.layer_name in ("fc6", "fc6_relu", "fc7",
                                                             "fc7_relu"):
            return 4096
        return None

    def check(self) -> None:
        """Raises ``face.WeightsError`` when the encoder settings cannot work."""
        from tfrecords_tools.face import WeightsError

        if self.pretrained:
            from tfrecords_tools.image_encoders import check_model_path

            check_model_path(self.encoder, self.encoder_model)
            if self.input_range != "unit":
                raise WeightsError(f"--input-range applies to --encoder keras; --encoder "
                                   f"{self.encoder} takes --image-mean/--image-std")
            if self.encoder == "keras-hub" and self.layer_pool == "flatten":
                raise WeightsError("--layer-pool flatten: keras-hub image backbones pool by cls "
                                   "(class token or pooled embedding) or avg (patch tokens)")
            return
        if self.layer_pool == "cls":
            raise WeightsError(f"--layer-pool cls applies to --encoder keras-hub or onnx, not "
                               f"{self.encoder}")
        if self.encoder == "vggface":
            if self.pool_name != "flatten":
                raise WeightsError("--layer-pool avg needs --encoder keras (VGG-Face's "
                                   "descriptor layers are vectors)")
            if not self.vggface_weights:
                raise WeightsError("--encoder vggface needs --vggface-weights PATH (the "
                                   "keras-vggface VGG16 .h5 file)")
        elif not self.encoder_model or not self.layer:
            raise WeightsError("--encoder keras needs --encoder-model FILE and --layer NAME")

    def weights_file(self) -> str:
        return self.vggface_weights if self.encoder == "vggface" else self.encoder_model

    def fingerprint(self) -> dict:
        """Every setting that changes the descriptors; the encoder file by its SHA-256.

        >>> import tempfile
        >>> model = tempfile.NamedTemporaryFile(suffix=".keras", delete=False).name
        >>> fp = VideoOptions(encoder="keras", encoder_model=model, layer="feat").fingerprint()
        >>> fp["encoder_model_sha256"][:8], fp["layer"], fp["fps"]
        ('e3b0c442', 'feat', 5.0)
        """
        from tfrecords_tools.face import WeightsError

        self.check()
        if self.pretrained:
            return self._pretrained_fingerprint()
        path = self.weights_file()
        try:
            digest = file_sha256(path)
        except OSError as err:
            what = "weight" if self.encoder == "vggface" else "face model"
            raise WeightsError(f"{path}: {what} file "
                               + ("not found" if not os.path.exists(path) else
                                  f"cannot be read ({err.strerror})")) from None
        file_key = ("vggface_weights_sha256" if self.encoder == "vggface"
                    else "encoder_model_sha256")
        fp = {"encoder": self.encoder, file_key: digest, "layer": self.layer_name}
        if self.encoder == "keras":
            fp.update(layer_pool=self.pool_name, input_range=self.input_range)
        return self._sampling(fp)

    def _sampling(self, fp: dict) -> dict:
        fp.update(detect=bool(self.detect), fps=float(self.fps), max_frames=self.max_frames,
                  video_pool=self.pool)
        if self.pool == "functionals":
            fp.update(hop=float(self.hop), video_window=float(self.window))
        return fp

    def _pretrained_fingerprint(self) -> dict:
        """keras-hub/onnx: the weights' and config files' SHA-256, the layer, pooling and the
        resolved preprocessing."""
        from tfrecords_tools import image_encoders

        kind, path = self.encoder, self.encoder_model
        fp = {"encoder": kind,
              "encoder_model_sha256": files_sha256(image_encoders.weight_files(kind, path))}
        if kind == "keras-hub":
            fp["encoder_config_sha256"] = files_sha256(image_encoders.config_files(kind, path))
        fp.update(layer=self.layer_name, layer_pool=self.pool_name, **self.prep().fingerprint())
        package = {"keras-hub": "keras-hub", "onnx": "onnxruntime"}[kind]
        fp[package] = _version(package)
        return self._sampling(fp)

    def feature_set(self) -> str:
        """The manifest's description of the descriptors.

        >>> VideoOptions(encoder="keras", encoder_model="m/fer.hdf5", layer="add_4",
        ...              layer_pool="avg").feature_set()
        'keras fer.hdf5:add_4 (avg, unit input) mean'
        """
        if self.encoder == "keras":
            enc = (f"keras {os.path.basename(self.encoder_model or '')}:{self.layer} "
                   f"({self.pool_name}, {self.input_range} input)")
        elif self.pretrained:
            name = os.path.basename(os.path.normpath(self.encoder_model or ""))
            layer = f":{self.layer_name}" if self.layer_name else ""
            prep = self.prep()
            enc = (f"{self.encoder} {name}{layer} ({self.pool_name}, "
                   f"{prep.size[0]}x{prep.size[1]} {prep.channel_order})")
        else:
            enc = f"vggface {self.layer_name}"
        return f"{enc} {self.pool}"


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    """Which corpus to read and how to label and split it.

    ``corpus`` is one of ``omg``, ``avec2016``, ``manifest``, ``ravdess``,
    ``images``, ``openface``, ``table``; the other fields are the options of
    that reader (see ``python -m tfrecords_tools.extract --help``). List
    fields take a tuple or a comma-separated string. ``modalities`` (empty:
    all the corpus gives) selects audio and/or video items of the corpora
    that give both (omg, manifest, ravdess, avec2016); asking a one-modality
    corpus (images, openface: video; table: ``--modality``) for another is
    an error.

    >>> spec = CorpusOptions("manifest", csv="my.csv", labels="neg, pos")
    >>> spec.labels
    ('neg', 'pos')
    >>> CorpusOptions("omg", csv_dir="csvs").check()
    Traceback (most recent call last):
    ...
    tfrecords_tools.corpora.shared.CorpusError: --corpus omg needs --clips-dir
    """

    corpus: str
    csv_dir: str | None = None
    clips_dir: str | None = None
    modalities: tuple = ()
    csv: str | None = None
    ravdess_dir: str | None = None
    ravdess_channels: tuple = ("speech", "song")
    images_dir: str | None = None
    labels_csv: str | None = None
    openface_dir: str | None = None
    openface_features: tuple = ("au_r", "au_c", "gaze", "pose")
    openface_pool: str = "frames"
    openface_face: str = "most"
    min_confidence: float = 0.8
    table: str | None = None
    modality: str | None = None
    id_column: str | None = None
    label_column: str | None = None
    speaker_column: str | None = None
    split_column: str | None = None
    avec_dir: str | None = None
    video_set: str = "appearance"
    label_map: str | None = None
    labels: tuple = ()
    name: str | None = None
    test_speakers: tuple = ()
    dev_speakers: tuple = ()

    def __post_init__(self):
        for f in ("modalities", "ravdess_channels", "openface_features", "labels",
                  "test_speakers", "dev_speakers"):
            object.__setattr__(self, f, _ids(getattr(self, f)))

    NEEDS: ClassVar[dict] = {
        "omg": ("csv_dir", "clips_dir"), "manifest": ("csv",), "avec2016": ("avec_dir",),
        "ravdess": ("ravdess_dir",), "openface": ("openface_dir",),
        "table": ("table", "modality"), "images": ()}

    def check(self) -> None:
        """Raises ``corpora.CorpusError`` naming the flags the corpus still needs."""
        from tfrecords_tools.corpora import CorpusError

        if self.corpus not in CORPORA:
            raise CorpusError(f"unknown corpus {self.corpus!r}; choose among {', '.join(CORPORA)}")
        missing = [f"--{a.replace('_', '-')}" for a in self.NEEDS[self.corpus]
                   if not getattr(self, a)]
        if self.corpus == "images" and not (self.images_dir or self.labels_csv):
            missing = ["--images-dir (and/or --labels-csv)"]
        if missing:
            raise CorpusError(f"--corpus {self.corpus} needs {' '.join(missing)}")
        given = ",".join(self.modalities)
        if any(m not in ("audio", "video") for m in self.modalities):
            raise CorpusError(f"--modalities {given}: choose among audio,video")
        if any(m not in self.corpus_modalities() for m in self.modalities):
            gives = "/".join(self.corpus_modalities())
            raise CorpusError(f"--modalities {given}: --corpus {self.corpus} gives {gives} "
                              "items only" + (" (--modality says which)"
                                              if self.corpus == "table" else ""))
        if self.corpus == "avec2016" and (self.label_map or self.labels):
            raise CorpusError("--label-map/--labels apply to classification corpora, and "
                              "avec2016 is a regression corpus")


    def corpus_modalities(self) -> tuple:
        """The modalities the corpus can give."""
        if self.corpus in ("images", "openface"):
            return ("video",)
        if self.corpus == "table":
            return (self.modality,) if self.modality else ()
        return ("audio", "video")

    def selected_modalities(self) -> tuple:
        """``--modalities`` within what the corpus gives, in the order audio, video.

        >>> spec = CorpusOptions("ravdess", ravdess_dir="r", modalities="video,audio,audio")
        >>> spec.selected_modalities()
        ('audio', 'video')
        >>> CorpusOptions("openface", openface_dir="o").selected_modalities()
        ('video',)
        """
        return tuple(m for m in self.corpus_modalities()
                     if not self.modalities or m in self.modalities)

    def scanned_folders(self) -> list:
        """``[(flag, folder)]``: the input folders this corpus' reader searches recursively.

        An ``--out`` inside one of them is refused (``extract.extract``):
        the extraction's own outputs would be read as inputs on the next run.
        Folders only looked up in (OMG clips, images with ``--labels-csv``)
        are not listed.
        """
        flag = {"ravdess": "ravdess_dir", "openface": "openface_dir", "avec2016": "avec_dir",
                "images": None if self.labels_csv else "images_dir"}.get(self.corpus)
        folder = getattr(self, flag) if flag else None
        return [(f"--{flag.replace('_', '-')}", folder)] if folder else []


def describe_differences(old: dict, new: dict) -> str:
    """``flag old -> new`` for each fingerprint entry that differs.

    >>> describe_differences({"audio_mode": "utterance"}, {"audio_mode": "windowed", "window": 4.0})
    "--audio-mode 'utterance' -> 'windowed', --window (unset) -> 4.0"
    """
    from emobed_tf import fingerprint  # the one comparison of recorded settings

    return fingerprint.changes(fingerprint.differences(old, new), old, new, FLAGS)
