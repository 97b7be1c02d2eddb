"""Corpus readers: what to extract (jobs) and with which labels, one module per corpus.

* ``omg``: OMG-Emotion annotation CSVs and clip folder (:func:`omg_jobs`).
* ``manifest``: the generic manifest CSV (:func:`read_manifest`,
  :func:`manifest_jobs`).
* ``ravdess``: RAVDESS files named ``MM-VV-EE-II-SS-RR-AA.ext``
  (:func:`ravdess_jobs`).
* ``images``: face images with a labels CSV or one sub-folder per class
  (:func:`image_jobs`).
* ``openface``: OpenFace 2 ``FeatureExtraction`` CSVs read as features
  (:func:`openface_items`).
* ``table``: a feature table, one row per item (:func:`table_items`).
* ``avec2016``: AVEC 2016 / RECOLA feature files and gold standards
  (:func:`avec_files`, :func:`read_table`).
* ``shared``: what they all use: :class:`Job`, :class:`Reading`,
  :func:`skip`, :class:`CorpusError`, text and CSV reading, the label map
  (:func:`parse_label_map`, :func:`apply_labels`) and
  :func:`assign_speaker_splits`.

The readers import ``shared`` (and ``openface`` the RAVDESS name parser), never this package;
the names below are handed on so that callers write ``corpora.ravdess_jobs(...)``.
"""

from tfrecords_tools.corpora.avec2016 import AVEC_PARTITIONS, avec_files, read_table
from tfrecords_tools.corpora.images import IMAGE_EXTS, image_jobs
from tfrecords_tools.corpora.manifest import MANIFEST_COLUMNS, manifest_jobs, read_manifest
from tfrecords_tools.corpora.omg import OMG_CLASSES, OMG_COLUMNS, OMG_SPLITS, find_omg_csv, omg_jobs
from tfrecords_tools.corpora.openface import (FRAME_RATE_TOLERANCE, OPENFACE_AUS,
                                              OPENFACE_FACE_RULES, OPENFACE_FIXED,
                                              OPENFACE_GROUPS, OPENFACE_LANDMARKS,
                                              OPENFACE_POOLS, OpenFaceClip, frame_step,
                                              openface_columns, openface_face_rule,
                                              openface_items, pool_frames, read_openface_csv)
from tfrecords_tools.corpora.ravdess import (MEDIA_EXTS, RAVDESS_CHANNELS, RAVDESS_EMOTIONS,
                                             RAVDESS_INTENSITIES, RAVDESS_MODALITIES,
                                             RAVDESS_NAME, RAVDESS_PREFERENCE,
                                             RAVDESS_PREFERENCE_TEXT, parse_ravdess_name,
                                             ravdess_jobs, ravdess_meta)
from tfrecords_tools.corpora.shared import (CorpusError, Job, Reading, apply_labels,
                                            assign_speaker_splits, parse_label_map, read_text,
                                            skip)
from tfrecords_tools.corpora.table import table_items
