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
  ``--ravdess-channels speech,song`` picks the vocal channels. A take gives
  one item per modality: audio from its audio-only 03 file (RAVDESS's PCM
  WAV), else from its 01 file; video from its video-only 02 file, else from
  its 01 file; the other files of the take are listed as ``duplicate``
  (naming the kept file) and counted in the summary's ``duplicates``.
* ``images``: face photographs, one video item per image, labelled by
  ``--labels-csv`` (``image``/``path``, ``emotion``/``label``, optional
  ``speaker``/``subject``, ``split``) or by class sub-folders.
* ``openface``: OpenFace 2 ``FeatureExtraction`` CSVs (one per clip);
  ``--openface-features au_r,au_c,gaze,pose`` (always in that order: AU
  intensities by AU number, AU presences, gaze_angle_x/y, pose_Rx/Ry/Rz),
  ``--openface-pool frames|mean|functionals`` ([T, D], [1, D], [1, 2D] mean
  then std); frames with ``success`` 0 or ``confidence < --min-confidence``
  are dropped and counted. Every CSV must hold every column of the groups
  asked for (17 AUxx_r, 18 AUxx_c as OpenFace 2 writes them): a file
  lacking one is an error naming it and the columns. A CSV with several
  ``face_id`` values is read for one face, ``--openface-face`` ``most``
  (default: the face_id in the most frames, ties broken by the higher mean
  confidence, then the lower id), ``largest`` (per frame the face whose
  2D landmarks x_0..x_67, y_0..y_67 span the largest box; a multi-face CSV
  without them is an error) or a face_id; the other faces' frames are
  counted per clip in the summary and the manifest's ``extra``
  (``other_face_frames_per_clip``). ``--openface-pool frames`` measures
  each clip's frame step from its ``timestamp`` column and writes it as the
  manifest's ``frame_step_s``; clips whose rates differ by more than 1% are
  an error naming two of them (pool ``mean``/``functionals`` instead).
  Labels from ``--labels-csv`` (``clip``, ``label``/``emotion``,
  ``speaker``/``actor``, optional ``split``) or from RAVDESS clip names.
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

Modalities: ``--modalities audio`` (or ``video``) extracts one modality of
the corpora that give both (omg, manifest, ravdess, avec2016); the files
and rows of the other are listed (kind ``modality_not_selected``) and its
encoder is not needed. images and openface give video items, table the
``--modality`` one: asking them for another modality is an error.

Outputs are never inputs: an ``--out`` inside a folder the reader searches
recursively (``--openface-dir``, ``--ravdess-dir``, ``--avec-dir``, an
``--images-dir`` of class folders) is refused, naming both paths, and so is
an input file or folder (any input flag, an encoder's weight file) inside
``--out`` (moving the finished data set into place would delete it),
before anything is written.

Splits: as the corpus says (OMG, manifest, a split column), else all
``train``; ``--test-speakers 01,02 --dev-speakers 03`` assigns them by
speaker. ``python -m emobed_tf.crossval`` assigns speaker folds at read
time, so a single ``train`` split is all cross-validation needs.

Each finished item's features are cached under ``OUT/.work/`` as soon as
they are computed, so an interrupted run resumes where it stopped and
produces the same records as an uninterrupted one (items are written in
input order once all are done); Ctrl-C ends with one line counting the
cached items (exit code 130). Inputs that cannot be used (no audio
stream, no face, corrupt file, a name that does not parse, a missing image,
a label dropped by the label map ...) are listed with the reason in
``OUT/failures.csv`` and counted in the summary and the manifest; nothing is
dropped silently. OpenFace and table corpora are read as features (no
media decoding, nothing to cache).

The cache is bound to the options that change an item's features (audio
mode, window, hop; encoder, the SHA-256 of its weight file, layer, pooling,
input range, detection, fps ...; ``OUT/.work/options.json``, also in the
manifest): a rerun with other options stops with an error naming them, and
``--overwrite`` discards the items cached with the old ones. ``--overwrite``
also replaces a finished data set (written aside, swapped in when complete).
``--retry-failed`` tries again the inputs an earlier run recorded as failed
(a file restored since). ``--out`` is locked while an extraction runs; a
second one into it stops, naming the holder. A manifest that is not UTF-8,
a full disk or a read-only output end in one ``error:`` line (exit code 2);
a WAV shorter than its header says is written with what decoded and listed
(kind ``truncated``); a repeated manifest row is written once (``duplicate``).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time

import numpy as np

from emobed_tf.configs import EGEMAPS_DIM
from emobed_tf.errors import EmobedError
from emobed_tf.io import FolderLock, OutputError, describe_os_error, write_json
from tfrecords_tools import corpora
from tfrecords_tools.corpora import CorpusError
from tfrecords_tools.jobs import run_audio_local, run_video_local
from tfrecords_tools.options import (AUDIO_MODES, CORPORA, INPUT_RANGES, VIDEO_POOLS, AudioOptions,
                                     CorpusOptions, OptionsError, VideoOptions)
from tfrecords_tools.options import (AUDIO_ENCODERS, AUDIO_POOLS, CHANNEL_ORDERS, ENCODERS,
                                     LAYER_POOLS)
from tfrecords_tools.workcache import WorkCache, write_failures_csv


def write_dataset(out, cache, name, task, label_names, jobs, dims, feature_sets, *,
                  dim_names=(), compression="", stats=None, skipped=(), features=None,
                  options=None, frame_step_s=None):
    """Writes the features of ``jobs`` (in input order) into shards, manifest and failures.csv.

    Features come from ``cache`` (a :class:`WorkCache`, media corpora) or from
    ``features`` (``{job key: array}``, corpora read as features). ``skipped``
    rows (inputs the reader could not use) head ``failures.csv``, followed by
    the extraction failures and the items written with a warning (kind
    ``truncated``). ``options`` (the options fingerprint per modality) goes
    into the manifest's ``extra`` as ``extraction_options``; ``frame_step_s``
    (a reader's measured frame step, None: the writer's default) goes into
    the manifest. Returns
    ``(items written per modality, failure rows, warning rows)``.
    """
    import tensorflow as tf

    from emobed_tf.records.schema import Item
    from emobed_tf.records.writer import DatasetWriter

    fails, notes, ready = [], [], []
    for job in jobs:
        if features is None:
            rec = cache.failure(job)
            if rec is None and not cache.has(job):
                rec = {"key": job.key, "path": job.path, "modality": job.modality,
                       "kind": "failed", "reason": "no features were produced"}
            if rec is not None:
                fails.append(rec)
                continue
            note = cache.note(job)
            if note:
                notes.append(note)
        ready.append(job)
    written = {m: 0 for m in dims}
    extra = {"failures": len(fails) + len(skipped), "skipped": len(skipped),
             "truncated": len(notes),
             **{k: v for k, v in (stats or {}).items() if k != "video_timing"}}
    if options:
        extra["extraction_options"] = options
    try:
        step = {} if frame_step_s is None else {"frame_step_s": frame_step_s}
        with DatasetWriter(out, name, task, label_names, dims, feature_sets,
                           dim_names=dim_names, compression=compression, overwrite=False,
                           extra=extra, **step) as w:
            for job in ready:
                feats = features[job.key] if features is not None else cache.load(job)
                dims_lab = None
                if job.label_dims:
                    dims_lab = np.repeat(np.asarray(job.label_dims, np.float32)[None],
                                         len(feats), 0)
                w.add(Item(job.modality, feats, job.label_class, dims_lab, job.corpus,
                           job.speaker, job.recording, job.split, job.meta))
                written[job.modality] = written.get(job.modality, 0) + 1
    except tf.errors.OpError as err:
        raise OutputError(f"{out}: cannot write the shards ({err.message})") from None
    write_failures_csv(os.path.join(out, "failures.csv"), list(skipped) + fails + notes)
    return written, fails, notes


def import_avec2016(root: str, out: str, video_set: str = "appearance",
                    compression: str = "", modalities=("audio", "video")) -> tuple:
    """AVEC 2016 feature files and gold standards into a regression data set in ``out``.

    ``modalities`` (``--modalities``) picks the feature folders read.

    Returns ``(items written per modality, failure rows)``; the failures are
    also written to ``out/failures.csv``.
    """
    from emobed_tf.records.schema import Item
    from emobed_tf.records.writer import DatasetWriter

    if not os.path.isdir(root):
        raise CorpusError(f"{root}: AVEC 2016 folder not found")
    video_dir = f"features_video_{video_set}"
    sets = {m: p for m, p in (("audio", os.path.join(root, "features_audio")),
                              ("video", os.path.join(root, video_dir))) if m in modalities}
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
        raise CorpusError(f"{root}: none of the feature folders "
                          f"{', '.join(os.path.basename(p) + '/' for p in sets.values())} found")
    fails = []
    items = []

    def fail(path, mod, kind, reason):
        fails.append({"path": path, "modality": mod, "kind": kind, "reason": reason})

    for mod, files in feats_by_mod.items():
        for (split, rec), path in sorted(files.items()):
            if (split, rec) not in gold["arousal"] or (split, rec) not in gold["valence"]:
                fail(path, mod, "no_gold_standard",
                     "no arousal/valence gold standard for this recording")
                continue
            _, x = corpora.read_table(path)
            labs = [corpora.read_table(gold[d][(split, rec)])[1][:, -1] for d in
                    ("arousal", "valence")]
            n = min(len(x), *(len(v) for v in labs))
            if n == 0 or max(len(x), *(len(v) for v in labs)) - n > 2:
                fail(path, mod, "length_mismatch", f"{len(x)} feature frames but "
                     f"{[len(v) for v in labs]} gold standard frames")
                continue
            dims.setdefault(mod, x.shape[1])
            if x.shape[1] != dims[mod]:
                fail(path, mod, "dim_mismatch", f"{x.shape[1]} features, other files have "
                                                f"{dims[mod]}")
                continue
            items.append(Item(mod, x[:n], label_dims=np.stack([v[:n] for v in labs], 1),
                              corpus="recola", speaker=rec, recording=rec, split=split))
    with DatasetWriter(out, "recola", "regression", ("arousal", "valence"), dims,
                       {"audio": "eGeMAPS (AVEC 2016)", "video": f"{video_set} (AVEC 2016)"},
                       frame_step_s=0.04, compression=compression,
                       extra={"failures": len(fails)}) as w:
        for it in items:
            w.add(it)
    write_failures_csv(os.path.join(out, "failures.csv"), fails)
    return {m: sum(1 for it in items if it.modality == m) for m in dims}, fails


def _count_kinds(skipped) -> dict:
    out = {}
    for f in skipped:
        out[f["kind"]] = out.get(f["kind"], 0) + 1
    return out


def read_corpus(source: CorpusOptions) -> tuple:
    """(labelled :class:`corpora.Reading`, task, data set name, dim names) of a corpus.

    Media corpora give jobs to extract; OpenFace and table corpora give
    features (``reading.features``). Labels are mapped and numbered, splits
    assigned by speaker when asked, and every item key is unique.
    """
    s = source
    s.check()
    label_map = corpora.parse_label_map(s.label_map)
    labels = s.labels or None
    order, dim_names = None, ()
    c, mods = s.corpus, s.selected_modalities()
    if c == "omg":
        reading = corpora.Reading(corpora.omg_jobs(s.csv_dir, s.clips_dir, mods))
        order, name, dim_names = corpora.OMG_CLASSES, s.name or "omg", ("arousal", "valence")
    elif c == "manifest":
        reading = corpora.read_manifest(s.csv, mods)
        name = s.name or "manifest"
        dim_names = ("arousal", "valence") if any(j.label_dims for j in reading.jobs) else ()
    elif c == "ravdess":
        reading = corpora.ravdess_jobs(s.ravdess_dir, s.ravdess_channels, s.name or "ravdess",
                                       mods)
        name = s.name or "ravdess"
    elif c == "images":
        reading = corpora.image_jobs(s.images_dir, s.labels_csv, s.name)
        name = reading.jobs[0].corpus
    elif c == "openface":
        reading = corpora.openface_items(s.openface_dir, s.labels_csv, s.openface_features,
                                         s.openface_pool, s.min_confidence, s.ravdess_channels,
                                         s.name, s.openface_face)
        name = reading.jobs[0].corpus
    elif c == "table":
        reading = corpora.table_items(s.table, s.modality, s.id_column, s.label_column,
                                      s.speaker_column, s.split_column, s.name)
        name = reading.jobs[0].corpus
    else:
        raise CorpusError(f"{c!r} is not read by read_corpus (avec2016: import_avec2016)")
    corpora.apply_labels(reading, label_map, labels, order)
    corpora.assign_speaker_splits(reading, s.test_speakers, s.dev_speakers)
    keys = {}
    for j in reading.jobs:
        if j.key in keys:
            raise CorpusError(f"{j.where or j.path}: item {j.key!r} repeats {keys[j.key]}")
        keys[j.key] = j.where or j.path
    return reading, "classification", name, dim_names


def _finished(out: str) -> bool:
    from emobed_tf.records.schema import MANIFEST_NAME

    return os.path.isfile(os.path.join(out, MANIFEST_NAME))


def _publish(staging: str, out: str) -> None:
    """Moves the data set written in ``staging`` into ``out``, the manifest last.

    An old data set's manifest goes first: an interruption in between leaves
    ``out`` unfinished (and a rerun rebuilds it from the cache), never a
    manifest describing shards of two extractions.
    """
    from emobed_tf.records.schema import MANIFEST_NAME

    try:
        final = os.path.join(out, MANIFEST_NAME)
        if os.path.exists(final):
            os.remove(final)
        for name in ("audio", "video", "failures.csv", "extraction_summary.json"):
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        for name in sorted(os.listdir(staging)):
            if name != MANIFEST_NAME:
                os.replace(os.path.join(staging, name), os.path.join(out, name))
        os.replace(os.path.join(staging, MANIFEST_NAME), final)
        os.rmdir(staging)
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(describe_os_error(err.filename or out, err)) from None


def extract(source: CorpusOptions, out: str, audio: AudioOptions | None = None,
            video: VideoOptions | None = None, *, workers: int = 1, engine: str = "local",
            beam_args=(), compression: str = "", overwrite: bool = False,
            retry_failed: bool = False) -> dict:
    """Runs one extraction into ``out``; returns the summary.

    Args:
        source: the corpus to read (:class:`options.CorpusOptions`).
        out: the data folder to write.
        audio, video: how to compute the features of media corpora (default:
            ``AudioOptions()``, ``VideoOptions()``).
        workers: openSMILE worker processes (local engine).
        engine: ``local`` or ``beam`` (``beam_args``: Beam's pipeline options).
        compression: ``""`` or ``"GZIP"``.
        overwrite: replace a finished data set in ``out``, and discard cached
            items made with other options (items cached with the same
            options are reused).
        retry_failed: try again the inputs an earlier run recorded as failed.

    ``out`` is locked for the duration (a second extraction into it is a
    ``LockedError`` naming the holder). A finished ``out`` is refused
    (``FileExistsError``) unless ``overwrite``; the new data set is written
    aside and replaces the old one only once complete.
    """
    source.check()
    audio = audio or AudioOptions()
    video = video or VideoOptions()
    check_out_outside_inputs(source, out, audio, video)
    if engine not in ("local", "beam"):
        raise OptionsError(f"--engine {engine}: choose local or beam")
    if compression not in ("", "GZIP"):
        raise OptionsError(f"--compression {compression}: choose '' or GZIP")
    refuse = (f"{out}: already holds a finished data set (manifest.json); choose another "
              "--out, or pass --overwrite to replace it")
    if _finished(out) and not overwrite:
        raise FileExistsError(refuse)
    try:
        lock = FolderLock(out, "feature extraction (tfrecords_tools.extract)").acquire()
    except OSError as err:
        raise OutputError(describe_os_error(out, err)) from None
    try:
        if _finished(out) and not overwrite:  # finished by another process meanwhile
            raise FileExistsError(refuse)
        return _extract_locked(source, out, audio, video, workers, engine, beam_args,
                               compression, overwrite, retry_failed)
    finally:
        lock.release()


# the flags of CorpusOptions, AudioOptions and VideoOptions that name input files or folders
INPUT_FIELDS = ("csv_dir", "clips_dir", "csv", "ravdess_dir", "images_dir", "labels_csv",
                "openface_dir", "table", "avec_dir", "label_map")
MODEL_FIELDS = {"audio": ("model",), "video": ("vggface_weights", "encoder_model")}


def input_paths(source: CorpusOptions, audio=None, video=None) -> list:
    """``[(flag, path)]``: the existing input files and folders the options name."""
    out = [(f"--{f.replace('_', '-')}", getattr(source, f, None)) for f in INPUT_FIELDS]
    for opts, fields in ((audio, MODEL_FIELDS["audio"]), (video, MODEL_FIELDS["video"])):
        for f in fields:
            flag = f"--{f.replace('_', '-')}" if opts is video else f"--audio-{f}"
            out.append((flag, getattr(opts, f, None) if opts is not None else None))
    return [(flag, p) for flag, p in out if p and os.path.exists(p)]


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (links resolved)."""
    a, b = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([a, b]) == b


def check_out_outside_inputs(source: CorpusOptions, out: str, audio=None, video=None) -> None:
    """Refuses an ``out`` that overlaps an input, in either direction, before anything is
    written (links are resolved first).

    * ``out`` inside an input folder the corpus reader searches recursively:
      the extraction's own outputs (``failures.csv``, ``OUT/.work/``,
      shards) would be read as inputs by the next run (an OpenFace reader
      takes ``failures.csv`` for a clip).
    * an input file or folder (any of the corpus' paths, an encoder's
      weights) inside ``out``, or ``out`` itself: ``OUT/audio``,
      ``OUT/video`` and ``OUT/failures.csv`` are replaced when the finished
      data set is moved into place and ``OUT/.work`` is cleared by
      ``--overwrite``, which would delete the input.
    """
    for flag, folder in source.scanned_folders():
        if _inside(out, folder):
            raise CorpusError(f"--out {out} lies inside {flag} {folder}, which is searched "
                              "recursively for inputs: the extraction's own outputs "
                              "(failures.csv, .work/, shards) would be read as inputs; choose an "
                              "--out outside it")
    for flag, path in input_paths(source, audio, video):
        if _inside(path, out):
            raise CorpusError(f"{flag} {path} lies inside --out {out}, whose contents the "
                              "extraction replaces (audio/, video/, failures.csv when the "
                              "finished data set is moved into place; .work/ with --overwrite): "
                              "the input could be deleted; choose an --out that holds no input")


def _extract_locked(source, out, audio, video, workers, engine, beam_args, compression,
                    overwrite, retry_failed) -> dict:
    cache = WorkCache(out)
    stats = {"audio_seconds": 0.0, "frames_without_face": 0}
    t0 = time.time()
    staging = cache.staging
    try:
        if os.path.isdir(cache.root):
            cache.remove_temporaries()
        shutil.rmtree(staging, ignore_errors=True)
        notes, skipped = [], []
        if source.corpus == "avec2016":
            written, fails = import_avec2016(source.avec_dir, staging, source.video_set,
                                             compression, source.selected_modalities())
            inputs = sum(written.values()) + len(fails)
        else:
            reading, task, name, dim_names = read_corpus(source)
            skipped = reading.skipped
            jobs, names = reading.jobs, reading.label_names
            stats.update(reading.stats)
            if reading.features is not None:  # how to read new inputs alike (the export's recipe)
                stats["reader"] = source.corpus
                if source.corpus == "openface":
                    stats.update(openface_features=list(source.openface_features),
                                 openface_pool=source.openface_pool)
            stats["skipped_by_kind"] = _count_kinds(skipped)
            if stats["skipped_by_kind"].get("duplicate"):
                stats["duplicates"] = stats["skipped_by_kind"]["duplicate"]
            audio_jobs = [j for j in jobs if j.modality == "audio"]
            video_jobs = [j for j in jobs if j.modality == "video"]
            options = None
            if reading.features is not None:
                dims = {}
                for j in jobs:
                    dims.setdefault(j.modality, reading.features[j.key].shape[1])
                feature_sets = {m: reading.feature_set for m in dims}
            else:
                options = {}
                if audio_jobs:
                    options["audio"] = audio.fingerprint()
                if video_jobs:
                    options["video"] = video.fingerprint()  # checks the encoder file first
                discarded = cache.bind_options(options, overwrite)
                if discarded:
                    stats["cache_discarded"] = discarded
                if retry_failed:
                    stats["retried"] = cache.forget_failures(jobs)
                if engine == "beam":
                    from tfrecords_tools.beam_pipeline import run_beam

                    run_beam(audio_jobs, video_jobs, cache, audio, video, stats, beam_args)
                else:
                    if audio_jobs:
                        run_audio_local(audio_jobs, cache, audio, workers, stats)
                    if video_jobs:
                        run_video_local(video_jobs, cache, video, stats)
                dims = {}
                if audio_jobs:
                    dims["audio"] = audio.dim
                enc_dim = next((cache.load(j).shape[1] for j in video_jobs if cache.has(j)),
                               None)
                if enc_dim:
                    dims["video"] = enc_dim
                feature_sets = {"audio": audio.feature_set(), "video": video.feature_set()}
            written, fails, notes = write_dataset(
                staging, cache, name, task, names, jobs, dims, feature_sets,
                dim_names=dim_names, compression=compression, stats=stats, skipped=skipped,
                features=reading.features, options=options,
                # the reader's measured step, else the audio sequence's hop (an lld data set at
                # --hop 0.1 has 10 frames a second, not the default 25)
                frame_step_s=reading.frame_step_s if reading.frame_step_s is not None
                else audio.frame_step_s if audio_jobs and reading.features is None else None)
            inputs = len(jobs) + len(skipped)
        summary = {"inputs": inputs, "written": written, "failed": len(fails),
                   "skipped": len(skipped), "truncated": len(notes),
                   "seconds": round(time.time() - t0, 1), **stats}
        write_json(os.path.join(staging, "extraction_summary.json"), summary)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def inspect(data_dir: str, records: int = 1) -> str:
    """A readable description of a data folder: manifest and sample records."""
    import tensorflow as tf

    from emobed_tf.data.source import shard_paths, Source
    from emobed_tf.records import schema

    src = Source.open(data_dir)
    m = src.manifest
    lines = [f"{data_dir}: {m.name!r}, {m.task}, schema v{m.schema_version}",
             f"  labels: {list(m.label_names)}" + (f", dims {list(m.dim_names)}" if m.dim_names
                                                   else "")]
    for mod, info in m.modalities.items():
        lines.append(f"  {mod}: dim {info.dim} ({info.feature_set}); items "
                     + ", ".join(f"{s} {n}" for s, n in info.counts.items())
                     + "; frames " + ", ".join(f"{s} {n}" for s, n in info.frames.items()))
        for split in info.shards:
            paths = shard_paths(src, mod, split)
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
        with open(fail, newline="", encoding="utf-8") as fh:
            kinds = [r.get("kind") or "failed" for r in csv.DictReader(fh)]
        n = sum(1 for k in kinds if k != "truncated")
        warned = len(kinds) - n
        lines.append(f"  failures: {n}" + (f", truncated inputs: {warned}" if warned else "")
                     + f" (see {fail})")
    return "\n".join(lines)




def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tfrecords_tools.extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, choices=CORPORA)
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
    p.add_argument("--openface-face", default="most",
                   help="openface: the face read from a CSV with several face_id values: most "
                        "(default: the face_id in the most frames; ties: higher mean "
                        "confidence, then lower id), largest (per frame, the largest 2D "
                        "landmark box; needs the x_0..x_67, y_0..y_67 columns) or a face_id; "
                        "the other faces' frames are counted in the summary")
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
    p.add_argument("--modalities", help="omg, manifest, ravdess, avec2016: the modalities to "
                                        "extract, audio,video (default: both); the other "
                                        "corpora give one modality and refuse another")
    p.add_argument("--workers", type=int, default=1, help="openSMILE worker processes")
    p.add_argument("--audio-mode", default="utterance", choices=AUDIO_MODES,
                   help=f"utterance: {EGEMAPS_DIM} eGeMAPS functionals per item; windowed: "
                        "functionals over --window every --hop; lld: the 25 eGeMAPS low-level "
                        "descriptors averaged over --hop steps (the paper's sequence input; use "
                        "--hop 0.1)")
    p.add_argument("--window", type=float, default=4.0, help="audio window (s), windowed mode")
    p.add_argument("--hop", type=float, default=None,
                   help="frame hop (s): eGeMAPS windowed/lld and video functionals (default "
                        "0.04); --audio-pool frames: pool encoder frames to this step (default: "
                        "the encoder's own frame rate)")
    p.add_argument("--audio-encoder", default="egemaps", choices=AUDIO_ENCODERS,
                   help="egemaps (openSMILE) or a pretrained speech encoder from --audio-model: "
                        "ct2 (Whisper, CTranslate2), hf (Transformers), keras-hub (Whisper "
                        "preset)")
    p.add_argument("--audio-model", help="the encoder's LOCAL model folder (nothing is "
                                         "downloaded)")
    p.add_argument("--audio-layer", help="hidden-state index, or a comma list averaged (0 = "
                                         "input embeddings; default the last layer; ct2: last "
                                         "only)")
    p.add_argument("--audio-pool", default="mean", choices=AUDIO_POOLS,
                   help="mean [1,D], mean+std [1,2D] over the valid frames, or frames [T,D]")
    p.add_argument("--audio-batch", type=int, default=8, help="utterances per encoder call")
    p.add_argument("--audio-no-pad", action="store_true",
                   help="ct2: encode each utterance alone instead of padded to Whisper's 30 s "
                        "(much faster, different features)")
    p.add_argument("--add-noise-snr", type=float, default=None, metavar="DB",
                   help="degraded-speech studies: mix white Gaussian noise into every audio file "
                        "at this SNR in dB (against the file's mean power) before extraction; "
                        "the noise is seeded by the file name and --noise-seed (recorded in the "
                        "manifest)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of --add-noise-snr's noise")
    p.add_argument("--encoder", default="vggface", choices=ENCODERS,
                   help="face encoder: vggface (--vggface-weights), keras (a .keras/.h5 model "
                        "and --layer), keras-hub (a LOCAL keras-hub image preset folder: ViT, "
                        "DINOv2, CLIP/SigLIP vision, EfficientNet ...) or onnx (a LOCAL .onnx "
                        "image model, e.g. HSEmotion's); nothing is downloaded")
    p.add_argument("--vggface-weights", help="keras-vggface VGG16 .h5 weight file")
    p.add_argument("--encoder-model", help="keras: a .keras/.h5 face model; keras-hub: a preset "
                                           "folder (save_to_preset); onnx: a .onnx file")
    p.add_argument("--layer", help="descriptor layer (default fc7_relu for vggface; keras-hub: "
                                   "optional layer name, default the backbone's output; onnx: "
                                   "output or tensor name, default the first output)")
    p.add_argument("--layer-pool", default=None, choices=LAYER_POOLS,
                   help="flatten the layer output; avg: average a 4-D output over its spatial "
                        "axes, or the patch tokens of a transformer; cls: the class token or "
                        "the model's pooled embedding (keras-hub, onnx). Default: flatten; "
                        "keras-hub: cls where the model has one, else avg; onnx: by the "
                        "output's rank")
    p.add_argument("--image-size", help="keras-hub/onnx: model input SIZE or HxW (default: the "
                                        "preset's image converter or the model's input)")
    p.add_argument("--image-mean", help="keras-hub/onnx: per-channel mean on [0, 1] pixels, 1 "
                                        "or 3 values, e.g. 0.485,0.456,0.406 (default: the "
                                        "preset's converter, else 0)")
    p.add_argument("--image-std", help="keras-hub/onnx: per-channel std on [0, 1] pixels, e.g. "
                                       "0.229,0.224,0.225 (default: the preset's, else 1)")
    p.add_argument("--channel-order", choices=CHANNEL_ORDERS,
                   help="keras-hub/onnx: channel order the model expects (default rgb)")
    p.add_argument("--input-range", default="unit", choices=tuple(INPUT_RANGES),
                   help="keras encoder: pixels scaled to [0, 1] (unit) or [-1, 1] (symmetric, "
                        "as the fer package's mini-Xception was trained)")
    p.add_argument("--no-detect", action="store_true", help="pre-cropped faces: no MTCNN")
    p.add_argument("--fps", type=float, default=5.0, help="video frames sampled per second")
    p.add_argument("--max-frames", type=int, help="at most this many frames per clip")
    p.add_argument("--video-pool", default="mean", choices=VIDEO_POOLS)
    p.add_argument("--video-window", type=float, default=8.0, help="functionals window (s)")
    p.add_argument("--compression", default="", choices=("", "GZIP"))
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished data set in --out, and discard items cached under "
                        "OUT/.work/ with other options (items cached with the same options are "
                        "reused)")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the inputs an earlier (interrupted) run recorded as failed, "
                        "e.g. after restoring a missing file")
    p.add_argument("--engine", default="local", choices=("local", "beam"),
                   help="beam: extract on Apache Beam (pip install emobed_tf[beam]); other "
                        "arguments after -- go to Beam's PipelineOptions, e.g. -- --runner=DirectRunner")
    args, beam_args = p.parse_known_args(argv)
    unknown = [a for a in beam_args if a != "--"]
    if unknown and args.engine != "beam":
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.beam_args = unknown
    return args




def options_from_args(args) -> tuple:
    """(:class:`CorpusOptions`, :class:`AudioOptions`, :class:`VideoOptions`) of parsed flags."""
    import dataclasses

    source = CorpusOptions(**{f.name: getattr(args, f.name)
                              for f in dataclasses.fields(CorpusOptions)})
    audio = AudioOptions(args.audio_mode, args.window, args.hop, encoder=args.audio_encoder,
                         model=args.audio_model, layer=args.audio_layer, pool=args.audio_pool,
                         batch_size=args.audio_batch, pad_window=not args.audio_no_pad,
                         noise_snr=args.add_noise_snr, noise_seed=args.noise_seed)
    video = VideoOptions(args.encoder, args.vggface_weights, args.encoder_model, args.layer,
                         args.layer_pool, args.input_range, not args.no_detect, args.fps,
                         args.max_frames, args.video_pool,
                         0.04 if args.hop is None else args.hop, args.video_window,
                         image_size=args.image_size, image_mean=args.image_mean,
                         image_std=args.image_std, channel_order=args.channel_order)
    return source, audio, video


def main(argv=None) -> int:
    """The command line: prints the summary line, or one ``error: ...`` line and returns 2;
    after Ctrl-C one ``interrupted: ...`` line (the items kept in the work cache), 130."""
    argv = list(sys.argv[1:] if argv is None else argv)

    if argv and argv[0] == "inspect":
        if len(argv) < 2:
            print("usage: python -m tfrecords_tools.extract inspect DATA_DIR", file=sys.stderr)
            return 2
        try:
            print(inspect(argv[1]))
        except EmobedError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    args = parse_args(argv)
    from emobed_tf import cli

    cli.quiet_frameworks()
    return cli.run_interruptible(lambda: _run(args), lambda: interrupted_note(args.out))


def interrupted_note(out: str) -> str:
    """The line after Ctrl-C: how many items' features the work cache keeps."""
    cache = WorkCache(out)
    n = sum(name.endswith(".npy") for mod in ("audio", "video")
            for name in (os.listdir(os.path.join(cache.root, mod))
                         if os.path.isdir(os.path.join(cache.root, mod)) else ()))
    return (f"{n} extracted items are kept in the work cache {cache.root}; rerun the same "
            "command to resume")


def _run(args) -> int:
    try:
        source, audio, video = options_from_args(args)
        summary = extract(source, args.out, audio, video, workers=args.workers,
                          engine=args.engine, beam_args=args.beam_args,
                          compression=args.compression, overwrite=args.overwrite,
                          retry_failed=args.retry_failed)
    except (EmobedError, FileExistsError) as err:
        return _error(err)
    except OSError as err:
        return _error(describe_os_error(err.filename or args.out, err))
    print(summary_line(summary, args.out))
    fails = os.path.join(args.out, "failures.csv")
    for key, what in (("label_map_unused", "--label-map entries matching no label"),
                      ("labels_without_items", "labels without any item")):
        if summary.get(key):
            print(f"warning: {what}: {summary[key]}", file=sys.stderr)
    if summary.get("duplicates"):
        what = DUPLICATES.get(args.corpus, "inputs repeat an item already read from another "
                                           "input and were not read again")
        print(f"warning: {summary['duplicates']} {what} (kind duplicate in {fails})",
              file=sys.stderr)
    if summary.get("truncated"):
        print(f"warning: {summary['truncated']} inputs are shorter than their header says and "
              f"were written with what decoded (kind truncated in {fails})", file=sys.stderr)
    return 0


# what the duplicate warning says per corpus
DUPLICATES = {"manifest": "manifest rows repeat an earlier row (same path, modality and label) "
                          "and were written once",
              "ravdess": "RAVDESS audio/video parts repeat a take already read from another "
                         "file (audio: 03 before 01, video: 02 before 01; or the same name) and "
                         "were not read again"}


def _error(err) -> int:
    text = " ".join(str(err).split("\n"))
    print(f"error: {text}", file=sys.stderr)
    return 2


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
    if summary.get("other_face_frames"):
        text += (f"; {summary['other_face_frames']} OpenFace frames of other faces left out in "
                 f"{len(summary['other_face_frames_per_clip'])} clips (--openface-face "
                 f"{summary['openface_face']})")
    if summary.get("truncated"):
        text += f"; {summary['truncated']} truncated inputs written with what decoded"
    if summary.get("frames_without_face"):
        text += f"; {summary['frames_without_face']} sampled frames without a face"
    return text


if __name__ == "__main__":
    sys.exit(main())
