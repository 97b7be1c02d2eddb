"""Feature extraction into sharded TFRecords.

::

    python -m tfrecords_tools.extract --corpus omg --csv-dir OMG_CSVS --clips-dir OMG_CLIPS \\
        --vggface-weights rcmalli_vggface_tf_vgg16.h5 --out data/omg --workers 2
    python -m tfrecords_tools.extract --corpus manifest --csv my_corpus.csv --out data/mine
    python -m tfrecords_tools.extract --corpus ravdess --ravdess-dir RAVDESS --workers 2 \\
        --label-map calm=,angry=anger,fearful=fear,happy=happiness,sad=sadness,surprised=surprise \\
        --out data/ravdess_speech
    python -m tfrecords_tools.extract --corpus images --images-dir FACES/images \\
        --labels-csv FACES/labels.csv --encoder keras --encoder-model fer.hdf5 --layer add_4 \\
        --layer-pool avg --no-detect --out data/faces
    python -m tfrecords_tools.extract --corpus openface --openface-dir OPENFACE_OUT \\
        --openface-pool mean --out data/ravdess_au
    python -m tfrecords_tools.extract --corpus table --table au_clip_means.csv \\
        --modality video --name ravdess --out data/ravdess_au
    python -m tfrecords_tools.extract --corpus avec2016 --avec-dir AVEC2016 --out data/recola
    python -m tfrecords_tools.extract inspect data/omg

Corpora (``--corpus``):

* ``omg``: OMG-Emotion annotation CSVs and clips (audio and video jobs).
* ``manifest``: a CSV ``path,modality,label,split,speaker[,corpus,recording,
  start,end,arousal,valence]``.
* ``ravdess``: RAVDESS files ``MM-VV-EE-II-SS-RR-AA.ext`` under
  ``--ravdess-dir``; audio-visual (01) files give an audio and a video item,
  02 video-only, 03 audio-only. Labels are RAVDESS's words (neutral, calm,
  happy, sad, angry, fearful, disgust, surprised), speaker = the two-digit
  actor, recording = the file stem; the record's ``meta`` holds intensity,
  statement, repetition, vocal channel and the take id ``VV-EE-II-SS-RR-AA``.
  ``--ravdess-channels speech,song`` picks the vocal channels.
* ``images``: face photographs, one video item per image, labelled by
  ``--labels-csv`` (``image``/``path``, ``emotion``/``label``, optional
  ``speaker``/``subject``, ``split``) or by class sub-folders.
* ``openface``: OpenFace 2 ``FeatureExtraction`` CSVs (one per clip);
  ``--openface-features au_r,au_c,gaze,pose`` (always in that order: AU
  intensities by AU number, AU presences, gaze_angle_x/y, pose_Rx/Ry/Rz),
  ``--openface-pool frames|mean|functionals`` ([T, D], [1, D], [1, 2D] mean
  then std); frames with ``success`` 0 or ``confidence < --min-confidence``
  are dropped and counted. Labels from ``--labels-csv`` (``clip``,
  ``label``/``emotion``, ``speaker``/``actor``, optional ``split``) or from
  RAVDESS clip names.
* ``table``: one row per item (``--id-column`` id/clip, ``--label-column``
  label/emotion, ``--speaker-column`` speaker/actor, ``--split-column``),
  every other column a numeric feature; ``--modality`` says which.
* ``avec2016``: AVEC 2016 / RECOLA feature files and gold standards
  (regression).

Labels: ``--label-map angry=anger,calm=`` (or a file: a JSON object or
``from=to`` lines) maps the corpus' words first; a label mapped to nothing
is dropped, counted and listed. ``--labels a,b,c`` fixes the label set and
its order (default: the sorted mapped labels); any other label is an error.
Two corpora trained together (target and auxiliary modality) must end with
the same ``--labels``.

Splits: as the corpus says (OMG, manifest, a split column), else all
``train``; ``--test-speakers 01,02 --dev-speakers 03`` assigns them by
speaker. ``python -m emobed_tf.crossval`` assigns speaker folds at read
time, so a single ``train`` split is all cross-validation needs.

Each finished item's features are cached under ``OUT/.work/`` as soon as
they are computed, so an interrupted run resumes where it stopped and
produces the same records as an uninterrupted one (items are written in
input order once all are done). Inputs that cannot be used (no audio
stream, no face, corrupt file, a name that does not parse, a missing image,
a label dropped by the label map ...) are listed with the reason in
``OUT/failures.csv`` and counted in the summary and the manifest; nothing is
dropped silently. OpenFace and table corpora are read as features (no
media decoding, nothing to cache).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

from tfrecords_tools import corpora
from tfrecords_tools.corpora import CorpusError, Job
from tfrecords_tools.media import MediaError

WORK = ".work"
INPUT_RANGES = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}


def _progress(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, dynamic_ncols=True)


def _cache_path(out, job: Job):
    return os.path.join(out, WORK, job.modality, job.cache_name() + ".npy")


def _save_atomic(path, arr):
    tmp = path + ".tmp.npy"
    np.save(tmp, arr)
    os.replace(tmp, path)


def _record_failure(out, job: Job, reason: str):
    """One small file per failed input (safe from parallel workers), written atomically."""
    folder = os.path.join(out, WORK, "failures")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{job.modality}-{job.cache_name()}.json")
    with open(path + ".tmp", "w") as fh:
        json.dump({"key": job.key, "path": job.path, "modality": job.modality,
                   "reason": reason}, fh)
    os.replace(path + ".tmp", path)


def _failures(out) -> dict:
    folder = os.path.join(out, WORK, "failures")
    if not os.path.isdir(folder):
        return {}
    found = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as fh:
                d = json.load(fh)
            found[d["key"]] = d
    return found


def pending(jobs, out) -> list:
    """Jobs neither cached nor known to fail (what a resumed run still has to do)."""
    failed = _failures(out)
    return [j for j in jobs if not os.path.exists(_cache_path(out, j)) and j.key not in failed]


def extract_audio_jobs(jobs, out, workers, mode, window_s, hop_s, stats):
    """Runs pending audio jobs in worker processes, caching each result."""
    from tfrecords_tools.audio_features import run_audio_jobs

    todo = pending(jobs, out)
    stats["audio_already_done"] = len(jobs) - len(todo)
    if not todo:
        return
    by_key = {j.key: j for j in todo}
    kw = {"mode": mode, "window_s": window_s, "hop_s": hop_s}
    args = [(j.key, j.path, {**kw, "start_s": j.start, "end_s": j.end}) for j in todo]
    with _progress(len(todo), "audio (openSMILE eGeMAPS)") as bar:
        for key, feats, err, secs in run_audio_jobs(args, workers):
            job = by_key[key]
            if err:
                _record_failure(out, job, err)
            else:
                _save_atomic(_cache_path(out, job), feats)
                stats["audio_seconds"] += secs
            bar.update(1)


def make_encoder(args):
    from tfrecords_tools import face

    if args.encoder == "vggface":
        if getattr(args, "layer_pool", "flatten") != "flatten":
            raise face.WeightsError("--layer-pool avg needs --encoder keras (VGG-Face's "
                                    "descriptor layers are vectors)")
        if not args.vggface_weights:
            raise face.WeightsError("--encoder vggface needs --vggface-weights PATH (the "
                                    "keras-vggface VGG16 .h5 file)")
        return face.VGGFaceEncoder(args.vggface_weights, args.layer or "fc7_relu")
    if not args.encoder_model or not args.layer:
        raise face.WeightsError("--encoder keras needs --encoder-model FILE and --layer NAME")
    return face.KerasModelEncoder(args.encoder_model, args.layer,
                                  getattr(args, "layer_pool", "flatten"),
                                  INPUT_RANGES[getattr(args, "input_range", "unit")])


def extract_video_jobs(jobs, out, args, stats):
    from tfrecords_tools import face

    todo = pending(jobs, out)
    stats["video_already_done"] = len(jobs) - len(todo)
    if not todo:
        return
    pipe = face.FacePipeline(make_encoder(args), detect=not args.no_detect)
    with _progress(len(todo), "video (faces)") as bar:
        for job in todo:
            stats["frames_without_face"] += video_job(pipe, job, out, vars(args))
            bar.update(1)
    stats["video_timing"] = pipe.timing


def video_job(pipe, job: Job, out: str, opts: dict) -> int:
    """Extracts one clip into the cache (or records its failure); returns faceless frames."""
    from tfrecords_tools.media import video_frames

    try:
        frames = ((t, f) for t, f in video_frames(job.path, opts["fps"], opts["max_frames"])
                  if (job.start is None or t >= job.start) and (job.end is None or t <= job.end))
        feats, missing = pipe.clip(job.path, frames, opts["video_pool"], opts["hop"],
                                   opts["video_window"])
    except MediaError as err:
        _record_failure(out, job, str(err))
        return 0
    _save_atomic(_cache_path(out, job), feats)
    return missing


def write_dataset(out, name, task, label_names, jobs, dims, feature_sets, dim_names,
                  compression, stats, skipped=(), features=None):
    """Writes the features of ``jobs`` (in input order) into shards + manifest.

    Features come from the cache (media corpora) or from ``features``
    (``{job key: array}``, corpora read as features). ``skipped`` rows (inputs
    the reader could not use) head ``failures.csv``, followed by the
    extraction failures.
    """
    from emobed_tf.schema import Item
    from emobed_tf.writer import DatasetWriter

    fails = _failures(out)
    written = {m: 0 for m in dims}
    extra = {"failures": len(fails) + len(skipped), "skipped": len(skipped),
             **{k: v for k, v in stats.items() if k != "video_timing"}}
    with DatasetWriter(out, name, task, label_names, dims, feature_sets, dim_names=dim_names,
                       compression=compression, overwrite=False, extra=extra) as w:
        for job in jobs:
            if features is not None:
                feats = features[job.key]
            else:
                path = _cache_path(out, job)
                if job.key in fails or not os.path.exists(path):
                    if job.key not in fails:
                        fails[job.key] = {"key": job.key, "path": job.path,
                                          "modality": job.modality,
                                          "reason": "no features were produced"}
                    continue
                feats = np.load(path)
            dims_lab = None
            if job.label_dims:
                dims_lab = np.repeat(np.asarray(job.label_dims, np.float32)[None], len(feats), 0)
            w.add(Item(job.modality, feats, job.label_class, dims_lab, job.corpus, job.speaker,
                       job.recording, job.split, job.meta))
            written[job.modality] = written.get(job.modality, 0) + 1
    with open(os.path.join(out, "failures.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["path", "modality", "reason"])
        for f in skipped:
            wr.writerow([f["path"], f["modality"], f["reason"]])
        for f in fails.values():
            wr.writerow([f["path"], f["modality"], f["reason"]])
    return written, fails


def import_avec2016(args, stats):
    """AVEC 2016 feature files and gold standards into a regression data set."""
    from emobed_tf.schema import Item
    from emobed_tf.writer import DatasetWriter

    root = args.avec_dir
    if not os.path.isdir(root):
        raise CorpusError(f"{root}: AVEC 2016 folder not found")
    video_dir = f"features_video_{args.video_set}"
    sets = {"audio": os.path.join(root, "features_audio"), "video": os.path.join(root, video_dir)}
    gold = {d: corpora.avec_files(os.path.join(root, "ratings_gold_standard", d))
            for d in ("arousal", "valence")}
    if not gold["arousal"]:
        raise CorpusError(f"{root}/ratings_gold_standard/arousal: no gold standard files")
    feats_by_mod, dims = {}, {}
    for mod, folder in sets.items():
        if not os.path.isdir(folder):
            continue
        sub = os.path.join(folder, "arousal")
        feats_by_mod[mod] = corpora.avec_files(sub if os.path.isdir(sub) else folder)
    if not feats_by_mod:
        raise CorpusError(f"{root}: neither features_audio/ nor {video_dir}/ found")
    fails = []
    items = []
    for mod, files in feats_by_mod.items():
        for (split, rec), path in sorted(files.items()):
            if (split, rec) not in gold["arousal"] or (split, rec) not in gold["valence"]:
                fails.append((path, mod, "no arousal/valence gold standard for this recording"))
                continue
            names, x = corpora.read_table(path)
            labs = [corpora.read_table(gold[d][(split, rec)])[1][:, -1] for d in
                    ("arousal", "valence")]
            n = min(len(x), *(len(v) for v in labs))
            if n == 0 or max(len(x), *(len(v) for v in labs)) - n > 2:
                fails.append((path, mod, f"{len(x)} feature frames but {[len(v) for v in labs]} "
                                         "gold standard frames"))
                continue
            dims.setdefault(mod, x.shape[1])
            if x.shape[1] != dims[mod]:
                fails.append((path, mod, f"{x.shape[1]} features, other files have {dims[mod]}"))
                continue
            items.append(Item(mod, x[:n], label_dims=np.stack([v[:n] for v in labs], 1),
                              corpus="recola", speaker=rec, recording=rec, split=split))
    with DatasetWriter(args.out, "recola", "regression", ("arousal", "valence"), dims,
                       {"audio": "eGeMAPS (AVEC 2016)", "video": f"{args.video_set} (AVEC 2016)"},
                       frame_step_s=0.04, compression=args.compression,
                       extra={"failures": len(fails)}) as w:
        for it in items:
            w.add(it)
    with open(os.path.join(args.out, "failures.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["path", "modality", "reason"])
        wr.writerows(fails)
    return {m: sum(1 for it in items if it.modality == m) for m in dims}, fails


def _count_kinds(skipped) -> dict:
    out = {}
    for f in skipped:
        out[f["kind"]] = out.get(f["kind"], 0) + 1
    return out


def _ids(text):
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else ()


def read_corpus(args) -> tuple:
    """(labelled :class:`corpora.Reading`, task, data set name, dim names) for ``args``."""
    label_map = corpora.parse_label_map(args.label_map)
    labels = _ids(args.labels) or None
    order, dim_names = None, ()
    c = args.corpus
    if c == "omg":
        reading = corpora.Reading(corpora.omg_jobs(args.csv_dir, args.clips_dir,
                                                   args.modalities.split(",")))
        order, name, dim_names = corpora.OMG_CLASSES, args.name or "omg", ("arousal", "valence")
    elif c == "manifest":
        reading = corpora.read_manifest(args.csv)
        name = args.name or "manifest"
        dim_names = ("arousal", "valence") if any(j.label_dims for j in reading.jobs) else ()
    elif c == "ravdess":
        reading = corpora.ravdess_jobs(args.ravdess_dir, _ids(args.ravdess_channels),
                                       args.name or "ravdess")
        name = args.name or "ravdess"
    elif c == "images":
        reading = corpora.image_jobs(args.images_dir, args.labels_csv, args.name)
        name = reading.jobs[0].corpus
    elif c == "openface":
        reading = corpora.openface_items(args.openface_dir, args.labels_csv,
                                         _ids(args.openface_features), args.openface_pool,
                                         args.min_confidence, _ids(args.ravdess_channels),
                                         args.name)
        name = reading.jobs[0].corpus
    elif c == "table":
        reading = corpora.table_items(args.table, args.modality, args.id_column,
                                      args.label_column, args.speaker_column, args.split_column,
                                      args.name)
        name = reading.jobs[0].corpus
    else:
        raise CorpusError(f"unknown corpus {c!r}")
    corpora.apply_labels(reading, label_map, labels, order)
    corpora.assign_speaker_splits(reading, _ids(args.test_speakers), _ids(args.dev_speakers))
    keys = {}
    for j in reading.jobs:
        if j.key in keys:
            raise CorpusError(f"{j.where or j.path}: item {j.key!r} repeats {keys[j.key]}")
        keys[j.key] = j.where or j.path
    return reading, "classification", name, dim_names


def extract(args) -> dict:
    """Runs one extraction; returns the summary."""
    from emobed_tf import schema

    out = args.out
    if os.path.isfile(os.path.join(out, schema.MANIFEST_NAME)):
        raise FileExistsError(f"{out}: already holds a finished data set (manifest.json); "
                              "choose another --out or remove it")
    os.makedirs(os.path.join(out, WORK, "audio"), exist_ok=True)
    os.makedirs(os.path.join(out, WORK, "video"), exist_ok=True)
    stats = {"audio_seconds": 0.0, "frames_without_face": 0}
    t0 = time.time()
    skipped = []
    if args.corpus == "avec2016":
        if args.label_map or args.labels:
            raise CorpusError("--label-map/--labels apply to classification corpora, and "
                              "avec2016 is a regression corpus")
        written, fails = import_avec2016(args, stats)
        inputs = sum(written.values()) + len(fails)
    else:
        reading, task, name, dim_names = read_corpus(args)
        skipped = reading.skipped
        jobs, names = reading.jobs, reading.label_names
        stats.update(reading.stats)
        stats["skipped_by_kind"] = _count_kinds(skipped)
        audio = [j for j in jobs if j.modality == "audio"]
        video = [j for j in jobs if j.modality == "video"]
        if reading.features is not None:
            dims = {}
            for j in jobs:
                dims.setdefault(j.modality, reading.features[j.key].shape[1])
            feature_sets = {m: reading.feature_set for m in dims}
        else:
            if args.engine == "beam":
                from tfrecords_tools.beam_pipeline import run_beam

                run_beam(audio, video, out, vars(args), stats)
            elif audio:
                extract_audio_jobs(audio, out, args.workers, args.audio_mode, args.window,
                                   args.hop, stats)
            enc_dim = None
            if video and args.engine != "beam":
                extract_video_jobs(video, out, args, stats)
            if video:
                enc_dim = next((np.load(_cache_path(out, j)).shape[1] for j in video
                                if os.path.exists(_cache_path(out, j))), None)
            dims = {}
            if audio:
                from tfrecords_tools.audio_features import EGEMAPS_DIM, EGEMAPS_LLD_DIM

                dims["audio"] = EGEMAPS_LLD_DIM if args.audio_mode == "lld" else EGEMAPS_DIM
            if video and enc_dim:
                dims["video"] = enc_dim
            encoder = (f"keras {os.path.basename(args.encoder_model or '')}:{args.layer} "
                       f"({args.layer_pool}, {args.input_range} input)" if args.encoder == "keras"
                       else f"vggface {args.layer or 'fc7_relu'}")
            feature_sets = {"audio": (f"eGeMAPSv02 LLDs averaged over {args.hop:g} s"
                                      if args.audio_mode == "lld"
                                      else f"eGeMAPSv02 functionals ({args.audio_mode})"),
                            "video": f"{encoder} {args.video_pool}"}
        written, fails = write_dataset(out, name, task, names, jobs, dims, feature_sets,
                                       dim_names, args.compression, stats, skipped,
                                       reading.features)
        inputs = len(jobs) + len(skipped)
    summary = {"inputs": inputs, "written": written, "failed": len(fails),
               "skipped": len(skipped), "seconds": round(time.time() - t0, 1), **stats}
    with open(os.path.join(out, "extraction_summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def inspect(data_dir: str, records: int = 1) -> str:
    """A readable description of a data folder: manifest and sample records."""
    import tensorflow as tf

    from emobed_tf import data as D
    from emobed_tf import schema

    src = D.Source.open(data_dir)
    m = src.manifest
    lines = [f"{data_dir}: {m.name!r}, {m.task}, schema v{m.schema_version}",
             f"  labels: {list(m.label_names)}" + (f", dims {list(m.dim_names)}" if m.dim_names
                                                   else "")]
    for mod, info in m.modalities.items():
        lines.append(f"  {mod}: dim {info.dim} ({info.feature_set}); items "
                     + ", ".join(f"{s} {n}" for s, n in info.counts.items())
                     + "; frames " + ", ".join(f"{s} {n}" for s, n in info.frames.items()))
        for split in info.shards:
            paths = D.shard_paths(src, mod, split)
            ds = tf.data.TFRecordDataset(paths[:1], compression_type=m.compression or None)
            for rec in ds.take(records):
                it = schema.decode_example(rec.numpy())
                lab = m.label_names[it.label_class] if it.label_class >= 0 else "-"
                lines.append(f"    {split}: {it.recording} speaker={it.speaker} "
                             f"features {it.features.shape} label={lab}"
                             + (f" dims {it.label_dims.shape}" if it.label_dims is not None
                                else ""))
    fail = os.path.join(data_dir, "failures.csv")
    if os.path.isfile(fail):
        with open(fail) as fh:
            n = sum(1 for _ in fh) - 1
        lines.append(f"  failures: {n} (see {fail})")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tfrecords_tools.extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True,
                   choices=("omg", "avec2016", "manifest", "ravdess", "images", "openface",
                            "table"))
    p.add_argument("--out", required=True, help="data folder to write")
    p.add_argument("--csv-dir", help="OMG: folder with the annotation CSVs")
    p.add_argument("--clips-dir", help="OMG: folder with <video>/<utterance> clips")
    p.add_argument("--csv", help="manifest: CSV with path,modality,label,split,speaker")
    p.add_argument("--ravdess-dir",
                   help="ravdess: folder searched for MM-VV-EE-II-SS-RR-AA.* files")
    p.add_argument("--ravdess-channels", default="speech,song",
                   help="ravdess, openface with RAVDESS names: vocal channels to keep")
    p.add_argument("--images-dir", help="images: image folder (class sub-folders without "
                                        "--labels-csv)")
    p.add_argument("--labels-csv", help="images: image,emotion[,speaker,split] CSV; openface: "
                                        "clip,label,speaker[,split] CSV")
    p.add_argument("--openface-dir", help="openface: folder of FeatureExtraction CSVs")
    p.add_argument("--openface-features", default="au_r,au_c,gaze,pose",
                   help="openface: groups among au_r,au_c,gaze,pose (kept in that order)")
    p.add_argument("--openface-pool", default="frames", choices=corpora.OPENFACE_POOLS,
                   help="openface: frames [T,D], mean [1,D] or functionals (mean, std) [1,2D]")
    p.add_argument("--min-confidence", type=float, default=0.8,
                   help="openface: frames below this confidence (or success 0) are dropped")
    p.add_argument("--table", help="table: CSV with one row per item")
    p.add_argument("--modality", choices=("audio", "video"), help="table: the features' modality")
    p.add_argument("--id-column", help="table: item id column (default id, else clip)")
    p.add_argument("--label-column", help="table: label column (default label, else emotion)")
    p.add_argument("--speaker-column", help="table: speaker column (default speaker, else "
                                            "actor; '' for none)")
    p.add_argument("--split-column", help="table: split column (default split if present, "
                                          "else all train)")
    p.add_argument("--label-map", help="FROM=TO[,FROM=TO...] or a file (JSON object or "
                                       "from=to lines); TO empty drops the label")
    p.add_argument("--labels", help="label names in class-id order (default: sorted labels "
                                    "after --label-map)")
    p.add_argument("--name", help="data set (and corpus) name")
    p.add_argument("--test-speakers", help="speaker ids of the test split (others: train)")
    p.add_argument("--dev-speakers", help="speaker ids of the dev split")
    p.add_argument("--avec-dir", help="avec2016: folder with features_* and ratings_gold_standard")
    p.add_argument("--video-set", default="appearance", choices=("appearance", "geometric"))
    p.add_argument("--modalities", default="audio,video", help="omg: which modalities")
    p.add_argument("--workers", type=int, default=1, help="openSMILE worker processes")
    p.add_argument("--audio-mode", default="utterance", choices=("utterance", "windowed", "lld"),
                   help="utterance: 88 eGeMAPS functionals per item; windowed: functionals over "
                        "--window every --hop; lld: the 25 eGeMAPS low-level descriptors averaged "
                        "over --hop steps (the paper's sequence input; use --hop 0.1)")
    p.add_argument("--window", type=float, default=4.0, help="audio window (s), windowed mode")
    p.add_argument("--hop", type=float, default=0.04, help="frame hop (s)")
    p.add_argument("--encoder", default="vggface", choices=("vggface", "keras"))
    p.add_argument("--vggface-weights", help="keras-vggface VGG16 .h5 weight file")
    p.add_argument("--encoder-model", help="a .keras/.h5 face model (--encoder keras)")
    p.add_argument("--layer", help="descriptor layer (default fc7_relu for vggface)")
    p.add_argument("--layer-pool", default="flatten", choices=("flatten", "avg"),
                   help="keras encoder: flatten the layer output, or average a 4-D output "
                        "over its spatial axes")
    p.add_argument("--input-range", default="unit", choices=tuple(INPUT_RANGES),
                   help="keras encoder: pixels scaled to [0, 1] (unit) or [-1, 1] (symmetric, "
                        "as the fer package's mini-Xception was trained)")
    p.add_argument("--no-detect", action="store_true", help="pre-cropped faces: no MTCNN")
    p.add_argument("--fps", type=float, default=5.0, help="video frames sampled per second")
    p.add_argument("--max-frames", type=int, help="at most this many frames per clip")
    p.add_argument("--video-pool", default="mean", choices=("mean", "frames", "functionals"))
    p.add_argument("--video-window", type=float, default=8.0, help="functionals window (s)")
    p.add_argument("--compression", default="", choices=("", "GZIP"))
    p.add_argument("--engine", default="local", choices=("local", "beam"),
                   help="beam: extract on Apache Beam (pip install emobed_tf[beam]); other "
                        "arguments after -- go to Beam's PipelineOptions, e.g. -- --runner=DirectRunner")
    args, beam_args = p.parse_known_args(argv)
    unknown = [a for a in beam_args if a != "--"]
    if unknown and args.engine != "beam":
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.beam_args = unknown
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "inspect":
        if len(argv) < 2:
            print("usage: python -m tfrecords_tools.extract inspect DATA_DIR", file=sys.stderr)
            return 2
        from emobed_tf.schema import DataError

        try:
            print(inspect(argv[1]))
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    args = parse_args(argv)
    need = {"omg": ("csv_dir", "clips_dir"), "manifest": ("csv",), "avec2016": ("avec_dir",),
            "ravdess": ("ravdess_dir",), "openface": ("openface_dir",),
            "table": ("table", "modality"), "images": ()}
    missing = [f"--{a.replace('_', '-')}" for a in need[args.corpus] if not getattr(args, a)]
    if args.corpus == "images" and not (args.images_dir or args.labels_csv):
        missing = ["--images-dir (and/or --labels-csv)"]
    if missing:
        print(f"error: --corpus {args.corpus} needs {' '.join(missing)}", file=sys.stderr)
        return 2
    from emobed_tf.schema import DataError
    from tfrecords_tools.face import WeightsError

    try:
        summary = extract(args)
    except (CorpusError, DataError, WeightsError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_line(summary, args.out))
    for key, what in (("label_map_unused", "--label-map entries matching no label"),
                      ("labels_without_items", "labels without any item")):
        if summary.get(key):
            print(f"warning: {what}: {summary[key]}", file=sys.stderr)
    return 0


def summary_line(summary: dict, out: str) -> str:
    """The one-line account of an extraction printed at the end."""
    text = (f"{summary['inputs']} inputs -> " + ", ".join(f"{n} {m} items" for m, n in
                                                        summary["written"].items())
            + f"; {summary['failed']} failed")
    if summary.get("skipped"):
        kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in
                          summary.get("skipped_by_kind", {}).items())
        text += f", {summary['skipped']} skipped ({kinds})"
    text += f" (see {os.path.join(out, 'failures.csv')})"
    dropped = summary.get("dropped_by_label_map")
    if dropped:
        text += "; dropped by the label map: " + ", ".join(f"{k} {n}" for k, n in dropped.items())
    if summary.get("frames_dropped"):
        text += (f"; {summary['frames_dropped']} of {summary['frames_read']} OpenFace frames "
                 f"dropped (success 0 or confidence < {summary['min_confidence']})")
    if summary.get("frames_without_face"):
        text += f"; {summary['frames_without_face']} sampled frames without a face"
    return text


if __name__ == "__main__":
    sys.exit(main())
