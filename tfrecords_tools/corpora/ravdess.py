"""RAVDESS (:func:`ravdess_jobs`): files named ``MM-VV-EE-II-SS-RR-AA.ext``
anywhere under a folder; audio-visual (01) files give an audio and a video
job, video-only (02) a video job, audio-only (03) an audio job; one take
(``VV-EE-II-SS-RR-AA``) gives at most one item per modality: its audio
from the audio-only 03 file (the original PCM WAV), else the 01 file; its
video from the video-only 02 file, else the 01 file (the same picture);
another file of the take is a ``duplicate`` row naming the kept one. Labels are
RAVDESS's words (neutral, calm, happy, sad, angry, fearful, disgust,
surprised), the speaker is the two-digit actor, the recording the file
stem; intensity, statement, repetition, vocal channel and the take id
(``VV-EE-II-SS-RR-AA``, shared by the audio-only and audio-visual files of
one take) go to the record's ``meta``.
"""

from __future__ import annotations

import json
import os
import re

from tfrecords_tools.corpora.shared import CorpusError, Job, Reading, skip

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
RAVDESS_MODALITIES = {"01": ("audio", "video"), "02": ("video",), "03": ("audio",)}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
RAVDESS_INTENSITIES = {"01": "normal", "02": "strong"}
RAVDESS_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
MEDIA_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".m4v", ".mov",
              ".avi", ".mkv", ".webm", ".flv")


def parse_ravdess_name(stem: str) -> dict:
    """The fields of a RAVDESS file stem ``MM-VV-EE-II-SS-RR-AA``.

    Returns ``modalities`` (jobs of the file), ``vocal_channel``, ``emotion``
    (RAVDESS's word), ``intensity``, ``statement``, ``repetition``, ``actor``
    (two digits, the speaker id) and ``take`` (``VV-EE-II-SS-RR-AA``, the same
    for the audio-only and audio-visual files of one take). Raises
    ValueError with the reason when the stem does not follow the pattern.
    """
    m = RAVDESS_NAME.fullmatch(stem)
    if not m:
        raise ValueError(f"name {stem!r} does not follow the RAVDESS pattern "
                         "MM-VV-EE-II-SS-RR-AA (seven two-digit fields)")
    mm, vv, ee, ii, ss, rr, aa = m.groups()
    checks = (("modality", mm, RAVDESS_MODALITIES), ("vocal channel", vv, RAVDESS_CHANNELS),
              ("emotion", ee, RAVDESS_EMOTIONS), ("intensity", ii, RAVDESS_INTENSITIES),
              ("statement", ss, ("01", "02")), ("repetition", rr, ("01", "02")))
    for what, code, allowed in checks:
        if code not in allowed:
            raise ValueError(f"name {stem!r}: {what} code {code} is not one of "
                             f"{', '.join(allowed)}")
    if aa == "00":
        raise ValueError(f"name {stem!r}: actor 00 is not an actor number")
    return {"modalities": RAVDESS_MODALITIES[mm], "vocal_channel": RAVDESS_CHANNELS[vv],
            "emotion": RAVDESS_EMOTIONS[ee], "intensity": RAVDESS_INTENSITIES[ii],
            "statement": ss, "repetition": rr, "actor": aa,
            "take": "-".join((vv, ee, ii, ss, rr, aa))}


def ravdess_meta(info: dict) -> str:
    """The record ``meta`` JSON of a parsed RAVDESS name."""
    keys = ("emotion", "intensity", "statement", "repetition", "vocal_channel", "take")
    return json.dumps({k: info[k] for k in keys}, separators=(",", ":"))


def _check_channels(channels):
    channels = tuple(channels)
    bad = [c for c in channels if c not in RAVDESS_CHANNELS.values()]
    if bad or not channels:
        raise CorpusError(f"--ravdess-channels {','.join(channels)}: choose among speech,song")
    return channels


def ravdess_jobs(root: str, channels=("speech", "song"), corpus: str = "ravdess",
                 modalities=("audio", "video")) -> Reading:
    """Jobs for the RAVDESS files under ``root`` (searched recursively).

    Every file is either a job or a ``skipped`` row: names off the pattern,
    extensions that are not media, a vocal channel not in ``channels``, a
    file giving no modality of ``modalities``, a second file of the same
    name elsewhere and a take's modality already read from another file
    (:data:`RAVDESS_PREFERENCE`; kind ``duplicate``, naming the kept file)
    are all listed with the reason. All items are ``train``; see
    :func:`assign_speaker_splits`.
    """
    channels = _check_channels(channels)
    if not os.path.isdir(root):
        raise CorpusError(f"{root}: RAVDESS folder not found")
    entries, skipped, first = [], [], {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            stem, ext = os.path.splitext(name)
            try:
                info = parse_ravdess_name(stem)
            except ValueError as err:
                skipped.append(skip(path, "", str(err), "bad_name"))
                continue
            mods = info["modalities"]
            if ext.lower() not in MEDIA_EXTS:
                skipped.append(skip(path, "+".join(mods), f"extension {ext!r} is not a media "
                                    f"file ({' '.join(MEDIA_EXTS)})", "not_media"))
                continue
            if stem in first:
                skipped.append(skip(path, "+".join(mods), f"same RAVDESS name as {first[stem]}",
                                    "duplicate"))
                continue
            first[stem] = path
            if info["vocal_channel"] not in channels:
                for mod in mods:
                    skipped.append(skip(path, mod, f"vocal channel {info['vocal_channel']} not "
                                        f"selected (--ravdess-channels {','.join(channels)})",
                                        "channel_not_selected"))
                continue
            wanted = [m for m in mods if m in modalities]
            if not wanted:
                skipped.append(skip(path, "+".join(mods), f"{'+'.join(mods)} file: modality not "
                                    f"selected (--modalities {','.join(modalities)})",
                                    "modality_not_selected"))
            entries += [(path, stem, info, mod) for mod in wanted]
    jobs = []
    for path, stem, info, mod, kept in _one_file_per_take(entries):
        if kept != path:
            skipped.append(skip(path, mod, f"take {info['take']}: its {mod} is read from {kept} "
                                f"({RAVDESS_PREFERENCE_TEXT[mod]})", "duplicate"))
            continue
        jobs.append(Job(f"{mod}/{stem}", mod, path, "train", corpus=corpus,
                        speaker=info["actor"], recording=stem, label=info["emotion"],
                        meta=ravdess_meta(info), where=path))
    if not jobs:
        raise CorpusError(f"{root}: no usable RAVDESS file ({len(skipped)} skipped"
                          + (f", e.g. {skipped[0]['path']}: {skipped[0]['reason']}" if skipped
                             else "") + ")")
    return Reading(jobs, skipped)


# which file of a take gives each modality, best first: the audio-only WAV holds the original
# 48 kHz PCM audio (the audio-visual MP4 the same audio AAC-compressed); the video-only MP4
# holds the same picture as the audio-visual one, without an audio track to demux
RAVDESS_PREFERENCE = {"audio": ("03", "01"), "video": ("02", "01")}
RAVDESS_PREFERENCE_TEXT = {"audio": "a take's audio comes from its audio-only 03 file, else its "
                                    "audio-visual 01 file",
                           "video": "a take's video comes from its video-only 02 file, else its "
                                    "audio-visual 01 file"}


def _one_file_per_take(entries) -> list:
    """``[(path, stem, info, modality, kept path)]``: which file gives each take's modality.

    ``entries`` are ``(path, stem, info, modality)`` in folder order; per
    (take, modality) the file first in :data:`RAVDESS_PREFERENCE` is kept
    (two files of one take and modality code have one name: the second is
    already a ``same RAVDESS name`` duplicate).
    """
    best = {}
    for path, stem, info, mod in entries:
        rank = RAVDESS_PREFERENCE[mod].index(stem[:2])
        key = (info["take"], mod)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, path)
    return [(path, stem, info, mod, best[(info["take"], mod)][1])
            for path, stem, info, mod in entries]
