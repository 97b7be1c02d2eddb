"""From a recording to an emotion: extract new inputs with an export's recipe, run the model.

:func:`predict` (and ``python -m emobed_tf.predict``) reads the feature recipe of an
export (``assets.extra/emobed_export.json``, see :mod:`emobed_tf.serving.recipe`),
rebuilds the extraction options of ``tfrecords_tools`` from it and extracts every
input through the same code (openSMILE eGeMAPS or a speech encoder in spawned
workers, ``tfrecords_tools.jobs``; the face pipeline ``jobs.make_encoder`` +
``face.FacePipeline`` + ``jobs.video_job``; ``corpora.read_openface_csv`` for OpenFace
CSVs), then runs the SavedModel locally (``model``) or through TF Serving
(``server``: REST ``http://HOST:8501`` or gRPC ``grpc://HOST:8500``).

A recipe that names an encoder file by its SHA-256 takes the file from the caller
(``encoder_model``, ``vggface_weights``, ``audio_model``) and refuses one with
another SHA-256, naming both: other weights give other features, which the model
was never trained on.

Rows are appended to ``out`` (CSV) as inputs finish and a rerun skips the inputs
already there; failures (no audio stream, no face, corrupt file ...) go to
``failures.csv`` beside it with the reason; ``out`` with ``.json`` is written at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import sys
import time

import numpy as np

from emobed_tf.errors import EmobedError
from emobed_tf.serving import recipe as recipes

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
VIDEO_EXTS = (".mp4", ".flv", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
SPEAKER_FROM = ("folder", "column", "file")
VERSION_KEYS = ("opensmile", "onnxruntime", "keras-hub", "ct2", "hf")  # package versions


class PredictError(EmobedError, ValueError):
    """A prediction that cannot run as asked; the message says why and what to do."""


class WeightsMismatch(PredictError):
    """An encoder file whose SHA-256 differs from the recipe's."""


# --------------------------------------------------------------------------
# inputs


@dataclasses.dataclass
class Input:
    """One recording (or OpenFace CSV, or table row) to predict."""

    path: str
    speaker: str = ""
    row: dict | None = None  # table rows: the row's values

    @property
    def name(self) -> str:
        return self.path


def _accepted(recipe: dict) -> tuple:
    reader = (recipe.get("reader") or {}).get("corpus")
    if reader:
        return (".csv",)
    if recipe["modality"] == "audio":
        return AUDIO_EXTS + VIDEO_EXTS
    return VIDEO_EXTS + IMAGE_EXTS


def _speaker(path: str, speaker_from: str) -> str:
    if speaker_from == "file":
        return path
    return os.path.basename(os.path.dirname(os.path.abspath(path)))


def _read_input_csv(path: str, speaker_from: str) -> list:
    """A manifest CSV of inputs: a ``path`` column (relative paths: from the CSV's folder),
    an optional ``speaker`` column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise PredictError(f"{path}: cannot read the input list ({err})") from None
    if not rows or "path" not in rows[0]:
        raise PredictError(f"{path}: an input list needs a 'path' column (and optionally "
                           "'speaker')")
    if speaker_from == "column" and "speaker" not in rows[0]:
        raise PredictError(f"{path}: --speaker-from column needs a 'speaker' column")
    base = os.path.dirname(path)
    out = []
    for r in rows:
        p = r["path"].strip()
        p = p if os.path.isabs(p) else os.path.join(base, p)
        spk = (r.get("speaker") or "").strip() if speaker_from == "column" else _speaker(
            p, speaker_from)
        out.append(Input(p, spk))
    return out


def _table_inputs(path: str, recipe: dict) -> list:
    """One input per row of a feature table holding the recipe's feature columns.

    Read as ``tfrecords_tools`` reads a table (``corpora.table_items``): ``,`` ``;`` or tab
    separated, header and values stripped."""
    from tfrecords_tools.corpora.shared import _read_rows

    names = recipe["reader"]["feature_names"]
    header, lines = _read_rows(path)
    lacking = [c for c in names if c not in header]
    if lacking:
        raise PredictError(f"{path}: the model reads the feature columns {names}; this table "
                           f"lacks {lacking}")
    idcol = next((c for c in ("id", "clip") if c in header), None)
    spkcol = next((c for c in ("speaker", "actor") if c in header), None)
    out = []
    for i, r in lines:
        rid = r[idcol] if idcol else str(i)
        out.append(Input(f"{path}#{rid}", r.get(spkcol, "") if spkcol else "", row=r))
    return out


def collect_inputs(paths, recipe: dict, speaker_from: str = "folder") -> list:
    """The :class:`Input` list of files, folders (recursive) and input-list CSVs.

    A missing path is an error (nothing is predicted); files of other types met in a
    folder are left out (named on the command line, they are an error).
    """
    if speaker_from not in SPEAKER_FROM:
        raise PredictError(f"--speaker-from {speaker_from}: choose among "
                           f"{', '.join(SPEAKER_FROM)}")
    reader = (recipe.get("reader") or {}).get("corpus")
    exts = _accepted(recipe)
    out = []
    for p in paths:
        if os.path.isdir(p):
            for folder, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(exts):
                        full = os.path.join(folder, f)
                        if reader == "table":
                            out += _table_inputs(full, recipe)
                        else:
                            out.append(Input(full, _speaker(full, speaker_from)))
        elif not os.path.exists(p):
            raise PredictError(f"{p}: no such file or folder")
        elif reader == "table":
            out += _table_inputs(p, recipe)
        elif p.lower().endswith(".csv") and reader != "openface":
            out += _read_input_csv(p, speaker_from)
        elif p.lower().endswith(exts):
            out.append(Input(p, _speaker(p, speaker_from)))
        else:
            what = {"audio": "audio or video files", "video": "video files or images"}
            raise PredictError(f"{p}: not an input this model reads (it takes "
                               + ("OpenFace CSVs or a feature table" if reader else
                                  what[recipe["modality"]]) + f": {', '.join(exts)})")
    if speaker_from == "column" and not any(p.lower().endswith(".csv") for p in paths):
        raise PredictError("--speaker-from column needs an input list CSV with a 'speaker' "
                           "column")
    seen, unique = set(), []
    for i in out:
        if i.path not in seen:
            seen.add(i.path)
            unique.append(i)
    return unique


# --------------------------------------------------------------------------
# recipe -> tfrecords_tools options


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return a == b


FILE_FLAGS = {"vggface_weights_sha256": "--vggface-weights",
              "encoder_model_sha256": "--encoder-model",
              "encoder_config_sha256": "--encoder-model",
              "audio_model_sha256": "--audio-model",
              "audio_model_config_sha256": "--audio-model"}


def check_fingerprint(want: dict, have: dict, files: dict) -> list:
    """Refuses options whose fingerprint differs from the recipe's; returns notes (package
    versions that differ). ``files``: flag -> the path given."""
    from tfrecords_tools.options import describe_differences

    for key, flag in FILE_FLAGS.items():
        if key in want and want[key] != have.get(key):
            raise WeightsMismatch(
                f"{flag} {files.get(flag)}: SHA-256 {have.get(key)} differs from the recipe's "
                f"{want[key]} ({key}); the model was trained on features of that file, and "
                "another file gives other features: give the same file")
    notes = [f"{k} {want.get(k)} at training, {have.get(k)} now" for k in VERSION_KEYS
             if k in want and want.get(k) != have.get(k)]
    rest = {k: v for k, v in want.items() if k not in VERSION_KEYS}
    got = {k: v for k, v in have.items() if k not in VERSION_KEYS}
    if any(not _same(rest.get(k), got.get(k)) for k in set(rest) | set(got)):
        raise PredictError("the extraction options rebuilt from the recipe differ from it: "
                           + describe_differences(rest, got))
    return notes


def _need(path, flag, what, digest):
    if not path:
        raise PredictError(f"the model's features come from {what}: give it with {flag} FILE "
                           f"(SHA-256 {digest})")
    if not os.path.exists(path):
        raise PredictError(f"{flag} {path}: not found")
    return path


def audio_options(fp: dict, audio_model: str | None = None):
    """``AudioOptions`` of an audio fingerprint (a speech encoder's folder from ``audio_model``)."""
    from tfrecords_tools.options import AudioOptions

    if "audio_encoder" not in fp:
        return AudioOptions(mode=fp["audio_mode"], window=fp.get("window", 4.0),
                            hop=fp.get("hop"))
    enc = fp["audio_encoder"]
    _need(audio_model, "--audio-model", f"the {enc} speech encoder ({fp.get('model_type')})",
          fp.get("audio_model_sha256"))
    return AudioOptions(encoder=enc, model=audio_model,
                        layer=",".join(str(i) for i in fp.get("audio_layer", [])) or None,
                        pool=fp.get("audio_pool", "mean"), hop=fp.get("hop"),
                        pad_window=fp.get("audio_pad_window", True))


def video_options(fp: dict, encoder_model=None, vggface_weights=None):
    """``VideoOptions`` of a video fingerprint (the encoder file from the flags)."""
    from tfrecords_tools.options import VideoOptions

    enc = fp["encoder"]
    kw = dict(encoder=enc, layer=fp.get("layer") or None, layer_pool=fp.get("layer_pool"),
              detect=bool(fp.get("detect", True)), fps=fp.get("fps", 5.0),
              max_frames=fp.get("max_frames"), pool=fp.get("video_pool", "mean"),
              hop=fp.get("hop", 0.04), window=fp.get("video_window", 8.0))
    if enc == "vggface":
        kw["vggface_weights"] = _need(vggface_weights, "--vggface-weights", "VGG-Face weights",
                                      fp.get("vggface_weights_sha256"))
        kw.pop("layer_pool")
    else:
        kw["encoder_model"] = _need(encoder_model, "--encoder-model", f"the {enc} face encoder",
                                    fp.get("encoder_model_sha256"))
    if enc == "keras":
        kw["input_range"] = fp.get("input_range", "unit")
    if enc in ("keras-hub", "onnx"):
        scale = np.asarray(fp.get("image_scale", [1 / 255.0]), np.float64)
        offset = np.asarray(fp.get("image_offset", [0.0]), np.float64)
        std = 1.0 / (255.0 * scale)
        kw.update(image_size=tuple(fp["image_size"]) if fp.get("image_size") else None,
                  image_mean=tuple(float(x) for x in -offset * std),
                  image_std=tuple(float(x) for x in std),
                  channel_order=fp.get("channel_order"))
    return VideoOptions(**kw)


# --------------------------------------------------------------------------
# extraction: through tfrecords_tools


class _Sink:
    """What ``tfrecords_tools.jobs.video_job`` stores into: one item's result in memory."""

    def __init__(self):
        self.result = None

    def save(self, job, feats, notes=()):
        self.result = (np.asarray(feats, np.float32), None)

    def record_failure(self, job, reason):
        self.result = (None, reason)


class Extractor:
    """Features of inputs as the recipe says: ``extract(inputs)`` yields
    ``(input, features [T, D] or None, reason or None)``."""

    def __init__(self, recipe: dict, encoder_model=None, vggface_weights=None, audio_model=None,
                 workers: int = 1):
        self.recipe, self.workers = recipe, max(1, int(workers))
        self.notes = []
        self.reader = recipe.get("reader")
        self.audio = self.video = None
        fp = recipe.get("extraction_options")
        if self.reader:
            return
        if recipe["modality"] == "audio":
            self.audio = audio_options(fp, audio_model)
            files = {"--audio-model": audio_model}
            have = self.audio.fingerprint()
        else:
            self.video = video_options(fp, encoder_model, vggface_weights)
            files = {"--encoder-model": encoder_model, "--vggface-weights": vggface_weights}
            try:
                have = self.video.fingerprint()
            except EmobedError as err:
                raise PredictError(str(err)) from None
        self.notes += check_fingerprint(fp, have, files)
        self._pipe = None

    def extract(self, inputs, segment: float | None = None):
        if self.reader:
            yield from self._features(inputs)
        elif self.audio is not None:
            yield from self._audio(inputs, segment)
        else:
            yield from self._video(inputs, segment)

    # each input: a list of (start, end) segments (one (None, None) without --segment)
    def _segments(self, path, segment):
        if not segment:
            return [(None, None)]
        dur = media_duration(path)
        if dur is None:
            return [(None, None)]
        n = max(1, int(np.ceil(dur / segment - 1e-9)))
        return [(round(i * segment, 6), round(min(dur, (i + 1) * segment), 6)) for i in range(n)]

    def _audio(self, inputs, segment):
        from tfrecords_tools import jobs as tt_jobs
        from tfrecords_tools.corpora import Job

        jobs, segs, bad = [], {}, {}
        for n, inp in enumerate(inputs):
            try:
                parts = self._segments(inp.path, segment)
            except EmobedError as err:
                bad[n] = str(err)
                continue
            segs[n] = parts
            for k, (a, b) in enumerate(parts):
                jobs.append(Job(f"{n}/{k}", "audio", inp.path, "test", start=a, end=b))
        for n, reason in bad.items():
            yield inputs[n], None, reason
        if not jobs:
            return
        got = {}
        args = tt_jobs.audio_job_args(jobs, self.audio)
        for key, feats, err, _secs, _notes in tt_jobs.run_audio_jobs_for(args, self.audio,
                                                                         self.workers):
            n, k = map(int, key.split("/"))
            got.setdefault(n, {})[k] = (feats, err)
            if len(got[n]) == len(segs[n]):
                yield self._gather(inputs[n], segs[n], got.pop(n))

    @staticmethod
    def _gather(inp, parts, results):
        errors = [results[k][1] for k in range(len(parts)) if results[k][1]]
        if errors and len(parts) == 1:
            return inp, None, errors[0]
        feats = [(a, b, None if results[k][1] else np.asarray(results[k][0], np.float32))
                 for k, (a, b) in enumerate(parts)]
        if all(f is None for _, _, f in feats):
            return inp, None, errors[0]
        return inp, feats, None

    def _video(self, inputs, segment):
        from tfrecords_tools import face
        from tfrecords_tools import jobs as tt_jobs
        from tfrecords_tools.corpora import Job

        if self._pipe is None:
            self._pipe = face.FacePipeline(tt_jobs.make_encoder(self.video),
                                           detect=self.video.detect)
        for n, inp in enumerate(inputs):
            try:
                parts = (self._segments(inp.path, segment)
                         if not inp.path.lower().endswith(IMAGE_EXTS) else [(None, None)])
            except EmobedError as err:
                yield inp, None, str(err)
                continue
            results = {}
            for k, (a, b) in enumerate(parts):
                sink = _Sink()
                try:
                    tt_jobs.video_job(self._pipe, Job(f"{n}/{k}", "video", inp.path, "test",
                                                      start=a, end=b), sink, self.video)
                except Exception as err:  # noqa: BLE001 - reported per file, the run goes on
                    sink.result = (None, f"{inp.path}: {type(err).__name__}: {err}")
                results[k] = sink.result
            yield self._gather(inp, parts, results)

    def _features(self, inputs):
        reader = self.reader
        names = reader["feature_names"]
        for inp in inputs:
            try:
                if reader["corpus"] == "table":
                    vals = [float(inp.row[c]) for c in names]
                    x = np.asarray(vals, np.float32)[None]
                    if not np.all(np.isfinite(x)):
                        raise ValueError("NaN/inf feature values")
                else:
                    from tfrecords_tools import corpora

                    clip = corpora.read_openface_csv(inp.path, reader["openface_features"],
                                                     reader["min_confidence"],
                                                     reader["openface_face"])
                    if len(clip.frames) == 0:
                        raise ValueError(f"no usable frame: all {clip.read} frames have success "
                                         f"0 or confidence < {reader['min_confidence']}")
                    x = corpora.pool_frames(clip.frames, reader["openface_pool"])
                yield inp, [(None, None, x)], None
            except (EmobedError, ValueError, KeyError, OSError) as err:
                text = str(err)
                yield inp, None, text if text.startswith(inp.path) else f"{inp.path}: {text}"


def media_duration(path: str) -> float | None:
    """A media file's duration in seconds (None: unknown); a file PyAV cannot open raises
    ``MediaError``."""
    import av

    from tfrecords_tools.media import MediaError

    if path.lower().endswith(IMAGE_EXTS):
        return None
    try:
        with av.open(path) as c:
            if c.duration is not None:
                return c.duration / 1e6
            s = (c.streams.audio or c.streams.video or [None])[0]
            if s is not None and s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
    except Exception as err:  # noqa: BLE001 - PyAV's errors vary
        if not os.path.isfile(path):
            raise MediaError(f"{path}: file not found") from None
        raise MediaError(f"{path}: cannot be decoded ({type(err).__name__}: {err})") from None
    return None


# --------------------------------------------------------------------------
# models: local SavedModel, REST, gRPC


def resolve_version_dir(model: str, version=None) -> str:
    """``saved_models/NAME[/VERSION]`` -> the version folder (the latest by default)."""
    if not os.path.isdir(model):
        raise PredictError(f"--model {model}: no such folder (an export: saved_models/NAME or "
                           "saved_models/NAME/VERSION)")
    if os.path.isfile(os.path.join(model, "saved_model.pb")):
        return model
    nums = sorted(int(n) for n in os.listdir(model) if re.fullmatch(r"\d+", n)
                  and os.path.isfile(os.path.join(model, n, "saved_model.pb")))
    if version is not None:
        if int(version) not in nums:
            raise PredictError(f"--model {model}: no version {version} (versions: "
                               f"{', '.join(map(str, nums)) or 'none'})")
        return os.path.join(model, str(int(version)))
    if not nums:
        raise PredictError(f"--model {model}: no SavedModel version folder here (written by "
                           "python -m emobed_tf.export)")
    return os.path.join(model, str(nums[-1]))


class LocalModel:
    """The SavedModel of a version folder, called in this process."""

    def __init__(self, version_dir: str, signature: str = "serving_default"):
        import tensorflow as tf

        self.where = version_dir
        try:
            loaded = tf.saved_model.load(version_dir)
        except Exception as err:  # noqa: BLE001 - TF's errors vary
            raise PredictError(f"{version_dir}: cannot load the SavedModel "
                               f"({type(err).__name__})") from None
        if signature not in loaded.signatures:
            raise PredictError(f"{version_dir}: no signature {signature!r} (signatures: "
                               f"{', '.join(loaded.signatures)})")
        self._keep, self._fn = loaded, loaded.signatures[signature]
        self.meta = recipes.read_export_meta(version_dir)

    def __call__(self, inputs: dict) -> dict:
        import tensorflow as tf

        try:
            out = self._fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as err:
            raise PredictError(f"{self.where}: the model refused the input: "
                               f"{err.message.splitlines()[0]}") from None
        return {k: v.numpy() for k, v in out.items()}


def _retry(what: str, call, retries: int, transient):
    """``call()``, again after a transient error (up to ``retries`` more tries)."""
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - transient decides
            why = transient(err)
            if why is None:
                raise
            if attempt == retries:
                raise PredictError(f"{what}: {why} (after {retries + 1} tries)") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class RestModel:
    """TF Serving's REST API: ``POST /v1/models/NAME[/versions/N]:predict`` (columnar)."""

    def __init__(self, url: str, name: str, version=None, signature="serving_default",
                 timeout: float = 30.0, retries: int = 2):
        self.base = url.rstrip("/") + f"/v1/models/{name}" + (
            f"/versions/{int(version)}" if version is not None else "")
        self.where, self.signature = self.base, signature
        self.timeout, self.retries = timeout, retries
        self.meta = self._get_meta()

    def _request(self, path: str, body: dict | None = None) -> dict:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data,
                                     headers={"Content-Type": "application/json"})

        def call():
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                text = err.read().decode(errors="replace")
                try:
                    text = json.loads(text).get("error", text)
                except ValueError:
                    pass
                if err.code in (502, 503, 504):
                    raise ConnectionError(f"HTTP {err.code}: {text}") from None
                raise PredictError(f"{self.base}{path}: HTTP {err.code}: "
                                   f"{' '.join(str(text).split())}") from None

        def transient(err):
            if isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError, OSError)):
                reason = getattr(err, "reason", err)
                return f"cannot reach the server ({reason})"
            return None

        return _retry(self.base + path, call, self.retries, transient)

    def _get_meta(self):
        meta = self._request("/metadata").get("metadata", {})
        return meta.get("emobed_export")

    def __call__(self, inputs: dict) -> dict:
        body = {"signature_name": self.signature,
                "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}}
        out = self._request(":predict", body)["outputs"]
        if not isinstance(out, dict):
            raise PredictError(f"{self.base}: the signature {self.signature!r} has one output; "
                               "an emobed export's has several")
        return {k: np.asarray(v) for k, v in out.items()}


class GrpcModel:
    """TF Serving's gRPC API: ``PredictionService.Predict`` and ``GetModelMetadata``."""

    def __init__(self, target: str, name: str, version=None, signature="serving_default",
                 timeout: float = 30.0, retries: int = 2):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.target, self.name, self.version, self.signature = target, name, version, signature
        self.where = f"grpc://{target} model {name}"
        self.timeout, self.retries = timeout, retries
        self._channel = grpc.insecure_channel(target)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.meta = self._get_meta()

    def _spec(self, spec):
        spec.name = self.name
        if self.version is not None:
            spec.version.value = int(self.version)

    def _call(self, method, request):
        import grpc

        def transient(err):
            if isinstance(err, grpc.RpcError) and err.code() in (
                    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return f"{err.code().name}: {err.details()}"
            return None

        try:
            return _retry(self.where, lambda: method(request, timeout=self.timeout),
                          self.retries, transient)
        except grpc.RpcError as err:
            raise PredictError(f"{self.where}: {err.code().name}: "
                               f"{' '.join(str(err.details()).split())}") from None

    def _get_meta(self):
        from google.protobuf import wrappers_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        req = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(req.model_spec)
        req.metadata_field.append(recipes.EXPORT_META_KEY)
        resp = self._call(self._stub.GetModelMetadata, req)
        if recipes.EXPORT_META_KEY not in resp.metadata:
            return None
        text = wrappers_pb2.StringValue()
        resp.metadata[recipes.EXPORT_META_KEY].Unpack(text)
        return json.loads(text.value)

    def __call__(self, inputs: dict) -> dict:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec)
        req.model_spec.signature_name = self.signature
        for k, v in inputs.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        resp = self._call(self._stub.Predict, req)
        return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def open_model(model=None, server=None, name=None, version=None,
               signature="serving_default", timeout=30.0, retries=2):
    """``(callable model, emobed_export meta)``: a local export or a server's."""
    if server:
        if not name:
            if not model:
                raise PredictError("--server needs --name (the served model's name)")
            name = os.path.basename(os.path.normpath(
                model if not re.fullmatch(r"\d+", os.path.basename(os.path.normpath(model)))
                else os.path.dirname(os.path.normpath(model))))
        if server.startswith("grpc://"):
            m = GrpcModel(server[len("grpc://"):].rstrip("/"), name, version, signature,
                          timeout, retries)
        elif server.startswith(("http://", "https://")):
            m = RestModel(server, name, version, signature, timeout, retries)
        else:
            raise PredictError(f"--server {server}: give http://HOST:8501 (REST) or "
                               "grpc://HOST:8500 (gRPC)")
        meta = m.meta
        if meta is None and model:  # the recipe from a local copy of the export
            meta = recipes.read_export_meta(resolve_version_dir(model, version))
        where = m.where
    else:
        if not model:
            raise PredictError("give --model saved_models/NAME (or --server)")
        m = LocalModel(resolve_version_dir(model, version), signature)
        meta, where = m.meta, m.where
    why = recipes.missing(meta)
    if why:
        raise PredictError(f"{where}: the export has {why}, so new recordings cannot be "
                           "turned into its input; re-export the run with python -m "
                           "emobed_tf.export (the run folder keeps what it needs)")
    return m, meta


# --------------------------------------------------------------------------
# output


def _columns(meta: dict, segmented: bool, per_speaker: bool) -> list:
    r = meta[recipes.RECIPE_KEY]
    seg = ["start", "end"] if segmented else []
    norm = ["normalization"] if per_speaker else []
    if r["task"] == "classification":
        return ["path", *seg, "label", *r["label_names"], *norm]
    return ["path", *seg, "time", *(meta.get("outputs") or r["label_names"]), *norm]


class Output:
    """``predictions.csv`` appended as inputs finish; ``failures.csv`` beside it."""

    def __init__(self, out: str, columns: list):
        base, ext = os.path.splitext(out)
        self.csv = out if ext.lower() == ".csv" else base + ".csv"
        self.json = base + ".json"
        self.failures = os.path.join(os.path.dirname(os.path.abspath(self.csv)), "failures.csv")
        self.columns = columns
        self.done = set()
        os.makedirs(os.path.dirname(os.path.abspath(self.csv)), exist_ok=True)
        if os.path.isfile(self.csv) and os.path.getsize(self.csv) > 0:
            with open(self.csv, newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                if header != columns:
                    raise PredictError(f"{self.csv}: holds predictions with other columns "
                                       f"({', '.join(header[:6])} ...), from another model or "
                                       "other options; give another --out")
                self.done = {row[0] for row in reader if row}
        else:
            with open(self.csv, "w", newline="") as fh:
                csv.writer(fh).writerow(columns)
        self._fail_rows = []
        self._write_failures()

    def _write_failures(self):
        with open(self.failures, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "reason"])
            w.writerows(self._fail_rows)

    def add_rows(self, rows: list) -> None:
        with open(self.csv, "a", newline="") as fh:
            w = csv.writer(fh)
            for r in rows:
                w.writerow([r.get(c, "") for c in self.columns])
            fh.flush()
            os.fsync(fh.fileno())

    def add_failure(self, path: str, reason: str) -> None:
        self._fail_rows.append([path, " ".join(str(reason).split())])
        self._write_failures()

    def write_json(self, summary: dict) -> None:
        with open(self.csv, newline="") as fh:
            rows = list(csv.DictReader(fh))

        def num(k, v):
            if k in ("path", "label", "normalization"):
                return v
            try:
                return float(v)
            except ValueError:
                return v

        from emobed_tf import io

        io.write_json(self.json, {"summary": summary,
                                  "predictions": [{k: num(k, v) for k, v in r.items()}
                                                  for r in rows]})


def _fmt(x) -> str:
    return repr(float(np.float32(x)))


def _fmt_time(x) -> str:
    """Seconds (segment bounds, curve times) to the microsecond: ``_fmt`` would widen 1.2 to
    float32's 1.2000000476837158, and ``k * step`` gives 0.12000000000000001."""
    return repr(round(float(x), 6))


# --------------------------------------------------------------------------
# the run


@dataclasses.dataclass
class _Ready:
    inp: Input
    parts: list  # (start, end, features [T, D] or None)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    note: str = ""


def _speaker_stats(items: list, meta: dict):
    """Sets each item's speaker statistics (or the export's fallback ones) and note."""
    from emobed_tf.records.manifest import standardisation

    minimum = int(meta.get("min_speaker_frames", 10))
    fb_mean = np.asarray(meta["fallback_mean"], np.float32)
    fb_std = np.asarray(meta["fallback_std"], np.float32)
    by = {}
    for it in items:
        by.setdefault(it.inp.speaker, []).append(it)
    for spk, group in by.items():
        frames = np.concatenate([f for it in group for _, _, f in it.parts if f is not None])
        n = len(frames)
        if spk and n >= minimum:
            m, s = standardisation(frames.astype(np.float64).sum(0),
                                   (frames.astype(np.float64) ** 2).sum(0), n)
            m, s = m.astype(np.float32), s.astype(np.float32)
            note = f"speaker {spk} ({n} frames of {len(group)} inputs)"
        else:
            m, s = fb_mean, fb_std
            note = (f"fallback statistics (speaker {spk}: {n} frames < {minimum})" if spk
                    else "fallback statistics (no speaker)")
        for it in group:
            it.mean, it.std, it.note = m, s, note


def frame_step(recipe: dict) -> float:
    """Seconds between the model's input frames (the ``time`` of regression rows).

    An audio recipe with a ``hop`` (eGeMAPS windowed/lld, an encoder's frames pooled over
    ``--hop``) has one frame per hop: the data set's ``frame_step_s`` is the writer's default
    0.04 whatever ``--hop`` was (``tfrecords_tools.extract`` keeps only a reader's measured
    step), so ``--hop 0.1`` would put every frame at 2/5 of its time.

    >>> frame_step({"modality": "audio", "frame_step_s": 0.04,
    ...             "extraction_options": {"audio_mode": "lld", "hop": 0.1}})
    0.1
    >>> frame_step({"modality": "video", "frame_step_s": 0.2, "extraction_options": {}})
    0.2
    """
    fp = recipe.get("extraction_options") or {}
    if recipe.get("modality") == "audio" and fp.get("hop"):
        return float(fp["hop"])
    return float(recipe.get("frame_step_s") or 0.04)


def _run_model(model, meta: dict, items: list, batch_size: int, timing: dict) -> list:
    """Rows of ``items`` (each with features), batched calls of ``model``."""
    r = meta[recipes.RECIPE_KEY]
    per_speaker = meta.get("normalize") == "speaker"
    flat = [(it, a, b, f) for it in items for a, b, f in it.parts if f is not None]
    rows = []
    for i in range(0, len(flat), batch_size):
        chunk = flat[i:i + batch_size]
        t = max(len(f) for *_, f in chunk)
        dim = chunk[0][3].shape[1]
        x = np.zeros((len(chunk), t, dim), np.float32)
        lengths = np.zeros(len(chunk), np.int32)
        for j, (*_, f) in enumerate(chunk):
            x[j, :len(f)] = f
            lengths[j] = len(f)
        inputs = {"features": x, "lengths": lengths}
        if per_speaker:
            inputs["speaker_mean"] = np.stack([it.mean for it, *_ in chunk])
            inputs["speaker_std"] = np.stack([it.std for it, *_ in chunk])
        t0 = time.perf_counter()
        out = model(inputs)
        timing["model_s"] += time.perf_counter() - t0
        for j, (it, a, b, f) in enumerate(chunk):
            base = {"path": it.inp.path}
            if a is not None or b is not None:
                base.update(start=_fmt_time(a or 0.0), end=_fmt_time(b) if b is not None else "")
            if per_speaker:
                base["normalization"] = it.note
            if r["task"] == "classification":
                p = np.asarray(out["probabilities"])[j]
                row = {**base, "label": r["label_names"][int(np.argmax(p))]}
                row.update({c: _fmt(v) for c, v in zip(r["label_names"], p)})
                rows.append(row)
            else:
                names = meta.get("outputs") or r["label_names"]
                step = frame_step(r)
                for k in range(lengths[j]):
                    row = {**base, "time": _fmt_time((a or 0.0) + k * step)}
                    row.update({n: _fmt(np.asarray(out[n])[j, k]) for n in names})
                    rows.append(row)
    return rows


def plot_curves(rows: list, names: list, folder: str) -> list:
    """One PNG per recording of the regression curves; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    by = {}
    for r in rows:
        by.setdefault(r["path"], []).append(r)
    written = []
    for path, rs in by.items():
        t = [float(r["time"]) for r in rs]
        fig, ax = plt.subplots(figsize=(7, 3))
        for n in names:
            ax.plot(t, [float(r[n]) for r in rs], label=n)
        ax.set_xlabel("time (s)")
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(os.path.basename(path))
        ax.legend(loc="upper right")
        fig.tight_layout()
        out = os.path.join(folder, re.sub(r"[^A-Za-z0-9._-]+", "_", path.strip("/")) + ".png")
        fig.savefig(out, dpi=80)
        plt.close(fig)
        written.append(out)
    return written


def predict(inputs, out: str = "predictions.csv", model: str | None = None,
            server: str | None = None, name: str | None = None, version=None,
            signature: str = "serving_default", segment: float | None = None,
            speaker_from: str = "folder", encoder_model: str | None = None,
            vggface_weights: str | None = None, audio_model: str | None = None,
            workers: int = 1, batch_size: int = 32, plot: str | None = None,
            timeout: float = 30.0, retries: int = 2, progress: bool = True) -> dict:
    """Predicts every input (files, folders, input-list CSVs); returns the summary.

    Raises :class:`PredictError` (or another ``EmobedError``) for a refusal before
    anything is predicted; a per-input failure is a row of ``failures.csv``.
    """
    if segment is not None and not segment > 0:
        raise PredictError(f"--segment {segment}: must be a positive number of seconds")
    t_start = time.perf_counter()
    net, meta = open_model(model, server, name, version, signature, timeout, retries)
    load_s = time.perf_counter() - t_start
    r = meta[recipes.RECIPE_KEY]
    per_speaker = meta.get("normalize") == "speaker"
    if isinstance(inputs, str):
        inputs = [inputs]
    items = collect_inputs(list(inputs), r, speaker_from)
    extractor = Extractor(r, encoder_model, vggface_weights, audio_model, workers)
    output = Output(out, _columns(meta, bool(segment), per_speaker))
    if per_speaker:  # a speaker is redone whole unless all its inputs are finished
        spk_done = {}
        for i in items:
            spk_done[i.speaker] = spk_done.get(i.speaker, True) and i.path in output.done
        todo = [i for i in items if not spk_done[i.speaker]]
    else:
        todo = [i for i in items if i.path not in output.done]
    skipped = len(items) - len(todo)
    timing = {"model_s": 0.0}
    counts = {"predicted": 0, "failed": 0}
    pending, all_rows = [], []

    def flush():
        if not pending:
            return
        if per_speaker:
            _speaker_stats(pending, meta)
        fresh = [p for p in pending if p.inp.path not in output.done]
        rows = _run_model(net, meta, fresh, batch_size, timing)
        output.add_rows(rows)
        all_rows.extend(rows)
        for p in fresh:
            output.done.add(p.inp.path)
            counts["predicted"] += 1
        pending.clear()

    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="predict", unit="file", file=sys.stderr,
                   dynamic_ncols=True)
    try:
        for inp, parts, reason in extractor.extract(todo, segment):
            if parts is None:
                output.add_failure(inp.path, reason)
                counts["failed"] += 1
            else:
                for a, b, f in parts:
                    if f is None:
                        output.add_failure(f"{inp.path}@{a}-{b}", "segment failed")
                pending.append(_Ready(inp, parts))
                if not per_speaker and len(pending) >= batch_size:
                    flush()
            if bar is not None:
                bar.update(1)
        flush()
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t_start
    summary = {"inputs": len(items), "predicted": counts["predicted"],
               "already_done": skipped, "failed": counts["failed"],
               "seconds": round(elapsed, 3), "load_seconds": round(load_s, 3),
               "model_seconds": round(timing["model_s"], 3),
               "model": os.path.normpath(model) if model and not server else None,
               "server": server, "normalize": meta.get("normalize", "corpus"),
               "feature_set": r.get("feature_set"), "notes": extractor.notes,
               "out": output.csv, "failures": output.failures}
    output.write_json(summary)
    if plot and r["task"] != "classification" and all_rows:
        summary["plots"] = plot_curves(all_rows, list(meta.get("outputs") or r["label_names"]),
                                       plot)
    return summary


def summary_line(s: dict) -> str:
    text = (f"{s['inputs']} inputs -> {s['predicted']} predicted, {s['already_done']} already "
            f"done, {s['failed']} failed (see {s['failures']}); predictions in {s['out']}")
    if s.get("normalize") == "speaker":
        text += "; per-speaker normalisation (the normalization column says which statistics)"
    if s.get("notes"):
        text += "; note: " + "; ".join(s["notes"])
    return text
