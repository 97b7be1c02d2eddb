"""EmoBed in Keras 3 / TensorFlow: crossmodal emotion embeddings for monomodal emotion recognition.

The package is layered; each layer imports only from the layers below it:

==========================  ==================================================================
``emobed_tf.errors``,       the ground: the exception base, atomic files and locks, every setting,
``io``, ``configs``,        job fingerprints (a folder that holds another job)
``fingerprint``
``emobed_tf.records``       the TFRecord schema, the manifest, the writer, the graph record parser
``emobed_tf.data``          data folders (``source``), speakers and folds, the ``tf.data`` pipeline
``emobed_tf.model``         the EmoBed model, its encoder stacks, losses and metrics
``emobed_tf.experiments``   runs: one experiment, its run folder, scoring, comparisons, reports
``emobed_tf.serving``       the monomodal SavedModel export for TF Serving
``emobed_tf.cli`` and the   the command lines: ``python -m emobed_tf.train|compare|sweep|
command modules             crossval|evaluate|export``
==========================  ==================================================================

The public names below are loaded lazily, so ``import emobed_tf`` imports
neither Keras nor TensorFlow (``--backend`` is chosen before Keras loads).

>>> import emobed_tf
>>> emobed_tf.default_config("demo", "/tmp/run", "audio", "emobed").mode
'emobed'
"""

from __future__ import annotations

import importlib

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("emobed_tf")
except PackageNotFoundError:  # a source checkout that is not installed: pyproject's version
    __version__ = "0.1.0"

# public name -> the module that defines it (its one home)
_PUBLIC = {
    "EmobedError": "emobed_tf.errors",
    "ConfigError": "emobed_tf.configs",
    "TrainConfig": "emobed_tf.configs",
    "default_config": "emobed_tf.configs",
    "DataError": "emobed_tf.records.schema",
    "Item": "emobed_tf.records.schema",
    "Manifest": "emobed_tf.records.manifest",
    "load_manifest": "emobed_tf.records.manifest",
    "DatasetWriter": "emobed_tf.records.writer",
    "Source": "emobed_tf.data.source",
    "PipelineOptions": "emobed_tf.data.pipeline",
    "make_modality_dataset": "emobed_tf.data.pipeline",
    "make_mixed_dataset": "emobed_tf.data.pipeline",
    "Fold": "emobed_tf.data.speakers",
    "make_folds": "emobed_tf.data.speakers",
    "EmoBed": "emobed_tf.model.emobed",
    "load_model": "emobed_tf.model.emobed",
    "RunDir": "emobed_tf.experiments.rundir",
    "RunError": "emobed_tf.experiments.rundir",
    "run": "emobed_tf.experiments.experiment",
    "run_or_reuse": "emobed_tf.experiments.experiment",
    "export_monomodal": "emobed_tf.serving.export",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    """Loads a public name on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'emobed_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
