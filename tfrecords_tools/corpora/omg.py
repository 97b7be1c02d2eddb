"""OMG-Emotion: the annotation CSVs (``link,start,end,video,utterance,
arousal,valence,EmotionMaxVote``) and the clip folder
(``CLIPS/<video>/<utterance>``); each utterance gives an audio and a video
job carrying the class and arousal/valence.
"""

from __future__ import annotations

import os

# corpora.OMG_CLASSES: the OMG-Emotion class order, defined once in the configs
from emobed_tf.configs import OMG_CLASSES
from tfrecords_tools.corpora.shared import CorpusError, Job, _float, _read_csv

OMG_COLUMNS = ("link", "start", "end", "video", "utterance", "arousal", "valence",
               "EmotionMaxVote")
OMG_SPLITS = {"train": ("omg_TrainVideos.csv", "omg_train", "train"),
              "dev": ("omg_ValidationVideos.csv", "omg_valid", "valid", "validation", "dev"),
              "test": ("omg_TestVideos.csv", "omg_test", "test")}


def find_omg_csv(csv_dir: str, split: str) -> str | None:
    for name in os.listdir(csv_dir):
        low = name.lower()
        if low.endswith(".csv") and any(p.lower() in low for p in OMG_SPLITS[split]):
            return os.path.join(csv_dir, name)
    return None


def omg_jobs(csv_dir: str, clips_dir: str, modalities=("audio", "video")) -> list:
    """Jobs for the OMG-Emotion splits whose CSV is in ``csv_dir``."""
    if not os.path.isdir(csv_dir):
        raise CorpusError(f"{csv_dir}: OMG annotation folder not found")
    jobs = []
    for split in ("train", "dev", "test"):
        path = find_omg_csv(csv_dir, split)
        if path is None:
            continue
        for line, row in enumerate(_read_csv(path, OMG_COLUMNS), start=2):
            try:
                label = int(float(row["EmotionMaxVote"]))
            except ValueError as err:
                raise CorpusError(f"{path}:{line}: EmotionMaxVote={row['EmotionMaxVote']!r} "
                                  "is not a class id") from err
            if not 0 <= label < len(OMG_CLASSES):
                raise CorpusError(f"{path}:{line}: EmotionMaxVote={label} outside "
                                  f"0..{len(OMG_CLASSES) - 1} "
                                  f"{list(OMG_CLASSES)}")
            dims = (_float(row, "arousal", path, line), _float(row, "valence", path, line))
            clip = os.path.join(clips_dir, row["video"], row["utterance"])
            rec = f"{row['video']}/{row['utterance']}"
            for mod in modalities:
                jobs.append(Job(f"{mod}/{split}/{rec}", mod, clip, split, label, dims, "omg",
                                row["video"], rec, label=OMG_CLASSES[label],
                                where=f"{path}:{line}"))
    if not jobs:
        raise CorpusError(f"{csv_dir}: no OMG annotation CSV (omg_TrainVideos.csv, "
                          "omg_ValidationVideos.csv, omg_TestVideos.csv)")
    return jobs
