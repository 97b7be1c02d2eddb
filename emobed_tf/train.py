"""Training CLI: ``python -m emobed_tf.train --dataset NAME --target audio --mode emobed --out RUN``.

A run folder holds::

    config.json          the full TrainConfig
    manifests/           the data manifests used (statistics for export)
    checkpoints/         last.keras, best.keras, state.json (resume state)
    logs/                TensorBoard logs
    model.keras          the best model (by the target modality's dev score)
    history.json         per-epoch logs
    metrics.json         dev/test scores of the target modality alone

Rerunning the same command after an interruption resumes from the last
finished epoch; a finished run is left untouched unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time

from emobed_tf import configs as C
from emobed_tf import data as D
from emobed_tf import schema
from emobed_tf.schema import DataError


class RunError(RuntimeError):
    """A problem with the run folder (finished run, different configuration)."""


# --------------------------------------------------------------------------
# configuration


def preset_for(name: str) -> C.DatasetPreset:
    if name not in C.DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {sorted(C.DATASETS)}")
    return C.DATASETS[name]


def default_config(dataset: str, out: str, target: str = "audio", mode: str = "emobed",
                   **overrides) -> C.TrainConfig:
    """The preset's defaults for ``dataset`` and ``target``, then ``overrides``."""
    preset = preset_for(dataset)
    loss = preset.loss
    if target in preset.beta_by_target:
        loss = dataclasses.replace(loss, beta=preset.beta_by_target[target])
    cfg = C.TrainConfig(dataset=dataset, out=out, target=target, mode=mode, model=preset.model,
                        loss=loss, data=preset.data, epochs=preset.epochs,
                        patience=preset.patience)
    return dataclasses.replace(cfg, **overrides)


HPARAM_FIELDS = {
    "alpha": "loss", "beta": "loss", "l2": "loss", "triplet_margin": "loss", "temperature": "loss",
    "encoder_layers": "model", "encoder_units": "model", "shared_layers": "model",
    "shared_units": "model", "dropout": "model",
    "batch_size": "data", "auxiliary_batch_size": "data",
    "learning_rate": "top", "epochs": "top", "patience": "top",
}


def apply_hparams(cfg: C.TrainConfig, hparams: dict) -> C.TrainConfig:
    """``cfg`` with hyperparameters by name (the names ``tuning.search`` writes)."""
    unknown = sorted(set(hparams) - set(HPARAM_FIELDS))
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; known: {sorted(HPARAM_FIELDS)}")
    parts = {"loss": {}, "model": {}, "data": {}, "top": {}}
    for name, value in hparams.items():
        parts[HPARAM_FIELDS[name]][name] = value
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, **parts["model"]),
        loss=dataclasses.replace(cfg.loss, **parts["loss"]),
        data=dataclasses.replace(cfg.data, **parts["data"]), **parts["top"])


def resolve_sources(cfg: C.TrainConfig) -> dict:
    """``{modality: Source}`` for the modalities the run uses."""
    preset = preset_for(cfg.dataset)
    if preset.generated:
        from emobed_tf import demo

        base = cfg.data_dir or demo.ensure_demo(cfg.dataset)
    else:
        base = cfg.data_dir or preset.default_dir
    needed = [cfg.target]
    aux = "video" if cfg.target == "audio" else "audio"
    if cfg.alpha > 0 or cfg.beta > 0:
        needed.append(aux)
    sources = {}
    for mod in needed:
        folder = getattr(cfg, f"{mod}_dir") or base
        if not folder:
            raise DataError(f"--dataset {cfg.dataset} needs --data-dir (or --{mod}-dir)")
        if not os.path.isfile(os.path.join(folder, schema.MANIFEST_NAME)):
            hint = f"\n  create it with: {preset.make_hint}" if preset.make_hint else ""
            raise DataError(f"{folder}: no TFRecord data set here (missing "
                            f"{schema.MANIFEST_NAME}) for --dataset {cfg.dataset}{hint}")
        src = D.Source.open(folder)
        if preset.task and src.manifest.task != preset.task:
            raise DataError(f"{folder}: manifest task {src.manifest.task!r} but --dataset "
                            f"{cfg.dataset} is {preset.task}")
        if mod not in src.manifest.modalities:
            what = "the target" if mod == cfg.target else f"the auxiliary modality in {cfg.mode} mode"
            raise DataError(f"{folder}: has no {mod} features, which {what} needs "
                            f"(it has {sorted(src.manifest.modalities)}); "
                            f"pass --{mod}-dir or use --mode classic")
        sources[mod] = src
    if cfg.data.speaker_folds:
        sources = speaker_fold_sources(cfg, sources)
    return sources


def speaker_fold_sources(cfg: C.TrainConfig, sources: dict) -> dict:
    """``sources`` with partitions assigned by speaker (``cfg.data.*_speakers``).

    The target modality's train/dev/test are its items of those speakers
    (train: every speaker not held out, unless listed). The auxiliary
    modality trains on all its items except those of a dev or test speaker
    of the target: a corpus that shares speakers with the target (the
    audio-visual situation) never brings a held-out speaker's face into
    training, and a corpus of other people is used whole.
    """
    d = cfg.data
    held_out = set(d.dev_speakers) | set(d.test_speakers)
    target_stats = D.speaker_statistics(sources[cfg.target], cfg.target)
    unknown = sorted(held_out - set(target_stats))
    if unknown:
        raise DataError(f"{sources[cfg.target].data_dir}: no {cfg.target} items of the held-out "
                        f"speakers {unknown} (speakers: {sorted(target_stats)})")
    train = set(d.train_speakers) or set(target_stats) - held_out
    overlap = sorted(train & held_out)
    if overlap:
        raise ValueError(f"speakers {overlap} are both training and held-out speakers")
    out = {cfg.target: D.fold_view(sources[cfg.target], cfg.target, {
        "train": sorted(train), "dev": sorted(d.dev_speakers), "test": sorted(d.test_speakers)},
        target_stats)}
    for mod, src in sources.items():
        if mod != cfg.target:
            stats = D.speaker_statistics(src, mod)
            out[mod] = D.fold_view(src, mod, {"train": sorted(set(stats) - held_out)}, stats)
    return out


def pipeline_options(cfg: C.TrainConfig, manifest: schema.Manifest) -> D.PipelineOptions:
    cols = ()
    if manifest.task == "regression" and cfg.data.label_dims:
        unknown = [d for d in cfg.data.label_dims if d not in manifest.label_names]
        if unknown:
            raise ValueError(f"unknown label dimensions {unknown}; the data has "
                             f"{list(manifest.label_names)}")
        cols = tuple(manifest.label_names.index(d) for d in cfg.data.label_dims)
    delay = int(round(cfg.data.label_delay_s / manifest.frame_step_s)) \
        if manifest.task == "regression" else 0
    return D.PipelineOptions(window=cfg.data.window, window_shift=cfg.data.window_shift,
                             shuffle_buffer=cfg.data.shuffle_buffer, label_delay_frames=delay,
                             label_dims=cols, cache=cfg.data.cache,
                             cache_limit_mb=cfg.data.cache_limit_mb)


def output_names(cfg: C.TrainConfig, manifest: schema.Manifest) -> list:
    if manifest.task == "regression" and cfg.data.label_dims:
        return list(cfg.data.label_dims)
    return list(manifest.label_names)


def build_model(cfg: C.TrainConfig, sources: dict):
    """A compiled :class:`emobed_tf.model.EmoBed` for ``cfg``."""
    import keras

    from emobed_tf.model import EmoBed

    manifest = sources[cfg.target].manifest
    names = output_names(cfg, manifest)
    dims = {m: s.manifest.modalities[m].dim for m, s in sources.items()}
    m, lc = cfg.model, cfg.loss
    model = EmoBed(task=manifest.task, num_outputs=len(names), input_dims=dims,
                   target=cfg.target, alpha=cfg.alpha, beta=cfg.beta, l2=lc.l2,
                   encoder_layers=m.encoder_layers, encoder_units=m.encoder_units,
                   shared_layers=m.shared_layers, shared_units=m.shared_units, dropout=m.dropout,
                   regression_loss=lc.regression_loss, triplet_form=lc.triplet_form,
                   triplet_margin=lc.triplet_margin, triplet_reduction=lc.triplet_reduction,
                   triplet_frame_stride=lc.triplet_frame_stride,
                   triplet_thresholds=lc.triplet_thresholds, output_names=names,
                   crossmodal_loss=lc.crossmodal_loss, temperature=lc.temperature)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
    return model


def make_datasets(cfg: C.TrainConfig, sources: dict):
    """(train, dev) datasets: mixed (or target-only) training, target-only dev."""
    manifest = sources[cfg.target].manifest
    opts = pipeline_options(cfg, manifest)
    aux_bs = cfg.data.auxiliary_batch_size or cfg.data.batch_size
    if len(sources) > 1:
        sizes = {cfg.target: cfg.data.batch_size}
        sizes.update({m: aux_bs for m in sources if m != cfg.target})
        train = D.make_mixed_dataset(sources, cfg.target, sizes, "train", seed=cfg.seed,
                                     options=opts)
    else:
        single = D.make_modality_dataset(sources[cfg.target], cfg.target, "train",
                                         cfg.data.batch_size, training=True, seed=cfg.seed,
                                         options=opts)
        train = single.map(lambda b: {cfg.target: b})
    dev_opts = dataclasses.replace(opts, window=0)
    dev = D.make_modality_dataset(sources[cfg.target], cfg.target, "dev",
                                  cfg.data.eval_batch_size, options=dev_opts)
    dev = dev.map(lambda b: {cfg.target: b})
    return train, dev


# --------------------------------------------------------------------------
# checkpointing and early stopping that survive a restart


def _atomic_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


def _atomic_save(model, path):
    tmp = path[: -len(".keras")] + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def make_run_checkpoint(run_dir: str, monitor: str, patience: int, state: dict | None = None):
    """A Keras callback: last/best checkpoints, early stopping, resumable state.

    Keras' ``BackupAndRestore`` + ``EarlyStopping`` would lose the early
    stopping counters on a restart; this callback persists them in
    ``checkpoints/state.json`` together with the history.
    """
    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.dir = os.path.join(run_dir, "checkpoints")
            os.makedirs(self.dir, exist_ok=True)
            self.state = dict(state or {"epoch": 0, "best": None, "best_epoch": None, "wait": 0,
                                        "stopped_early": False, "history": []})

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if monitor not in logs:
                raise RuntimeError(f"dev score {monitor!r} missing from the logs {sorted(logs)}")
            st = self.state
            st["history"].append({"epoch": epoch + 1, **logs})
            score = logs[monitor]
            if st["best"] is None or score > st["best"]:
                st.update(best=score, best_epoch=epoch + 1, wait=0)
                _atomic_save(self.model, os.path.join(self.dir, "best.keras"))
            else:
                st["wait"] += 1
            st["epoch"] = epoch + 1
            if st["wait"] >= patience:
                st["stopped_early"] = True
                self.model.stop_training = True
            _atomic_save(self.model, os.path.join(self.dir, "last.keras"))
            _atomic_json(os.path.join(self.dir, "state.json"), st)

    return RunCheckpoint()


# --------------------------------------------------------------------------
# the run


def _prepare_run_dir(cfg: C.TrainConfig, overwrite: bool):
    """Returns the saved resume state (or None) after checking the folder."""
    out = cfg.out
    cfg_path = os.path.join(out, "config.json")
    if overwrite and os.path.isdir(out):
        shutil.rmtree(out)
    if os.path.isfile(os.path.join(out, "metrics.json")):
        raise RunError(f"{out}: this run is already finished (metrics.json exists); "
                       "pass --overwrite to train it again, or choose another --out")
    if os.path.isfile(cfg_path):
        with open(cfg_path) as fh:
            old = json.load(fh)
        new = json.loads(json.dumps(cfg.to_json()))
        diff = sorted(k for k in new if k not in ("epochs", "verbose") and old.get(k) != new[k])
        if diff:
            raise RunError(f"{out}: holds an unfinished run with a different configuration "
                           f"({', '.join(diff)}); resume it with the same arguments, pass "
                           "--overwrite to discard it, or choose another --out")
        state_path = os.path.join(out, "checkpoints", "state.json")
        if os.path.isfile(state_path) and os.path.isfile(
                os.path.join(out, "checkpoints", "last.keras")):
            with open(state_path) as fh:
                return json.load(fh)
    return None


def _data_error_from(err, sources):
    """Turns a tf.data failure into a DataError naming the shard."""
    shards = [(p, src.manifest.compression) for src in sources.values()
              for mod in src.manifest.modalities for split in ("train", "dev", "test")
              for p in D.shard_paths(src, mod, split, required=False)]
    return D.data_error_from(err, shards)


def evaluate_run(model, cfg: C.TrainConfig, sources: dict) -> dict:
    """Dev and test scores of the target modality alone (pooled)."""
    from emobed_tf.predict import predict_split, score_predictions

    src = sources[cfg.target]
    opts = pipeline_options(cfg, src.manifest)
    names = output_names(cfg, src.manifest)
    out = {}
    for split in ("dev", "test"):
        if not src.manifest.modalities[cfg.target].shards.get(split):
            continue
        p = predict_split(model, src, cfg.target, split, cfg.data.eval_batch_size, opts)
        out[split] = score_predictions(p, names)
        out[split]["n"] = int(len(p.pooled()[0]))  # items or frames, for significance tests
    return out


def headline_keys(task: str, names) -> list:
    if task == "classification":
        return ["f1_macro", "f1_micro", "uar", "accuracy"]
    return [f"ccc_{n}" for n in names]


def format_summary(result: dict) -> str:
    keys = result["headline"]
    lines = [f"run {result['out']}: target={result['target']} mode={result['mode']} "
             f"alpha={result['alpha']:g} beta={result['beta']:g} "
             f"(best epoch {result['best_epoch']} of {result['epochs_trained']})",
             f"  {'score':<14}{'dev':>9}{'test':>9}"]
    for k in keys:
        vals = [result.get(s, {}).get(k) for s in ("dev", "test")]
        lines.append(f"  {k:<14}" + "".join(f"{v:>9.4f}" if v is not None else f"{'-':>9}"
                                            for v in vals))
    return "\n".join(lines)


STRATEGIES = ("none", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name: str):
    """The ``tf.distribute`` strategy for ``--strategy`` (None for ``none``)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":  # cluster from TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def fit_multiworker(model, strategy, train_ds, cfg: C.TrainConfig, sources: dict, ckpt,
                    start: int) -> None:
    """Training loop for ``MultiWorkerMirroredStrategy``.

    ``model.fit`` fails under this strategy with Keras 3.15 (keras-team/keras#20585), so
    each step runs ``model.train_step`` through ``strategy.run`` on a distributed dataset:
    ``--batch-size`` is the global batch, split between the workers, whose gradients are
    summed (all-reduce); every worker runs the same number of steps (collectives need it);
    the dev score is measured at the end of each epoch with the target modality alone.
    """
    import tensorflow as tf

    from emobed_tf.predict import predict_split, score_predictions

    workers = strategy.num_replicas_in_sync
    n = int(train_ds.cardinality())
    per_epoch = (n // workers) * workers
    if per_epoch == 0:
        raise DataError(f"{n} training batches cannot be shared by {workers} workers")
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist = strategy.experimental_distribute_dataset(train_ds.take(per_epoch).with_options(opts))

    @tf.function
    def step(batch):
        strategy.run(model.train_step, args=(batch,))

    src = sources[cfg.target]
    opts_eval = pipeline_options(cfg, src.manifest)
    names = output_names(cfg, src.manifest)
    key = "ccc_mean" if model.task == "regression" else "f1_macro"
    ckpt.set_model(model)
    for epoch in range(start, cfg.epochs):
        for m in model.metrics:
            m.reset_state()
        seen = examples = 0
        for batch in dist:
            step(batch)
            seen += 1
            for part in strategy.experimental_local_results(batch[cfg.target]["label"]):
                examples += int(part.shape[0])
        logs = {m.name: float(m.result()) for m in model.metrics}
        dev = score_predictions(predict_split(model, src, cfg.target, "dev",
                                              cfg.data.eval_batch_size, opts_eval), names)
        logs[f"val_{model.score_name}"] = dev[key]
        logs["batches_this_worker"] = seen  # global batches, split across the workers
        logs["examples_this_worker"] = examples
        if cfg.verbose:
            print(f"epoch {epoch + 1}/{cfg.epochs}: " + " - ".join(
                f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        ckpt.on_epoch_end(epoch, logs)
        if model.stop_training:
            break


def train(cfg: C.TrainConfig, overwrite: bool = False, callbacks=()) -> dict:
    """Trains (or resumes) one run and writes the run folder. Returns metrics.json's content.

    ``callbacks`` are extra Keras callbacks, run after the checkpointing one.
    """
    import keras
    import tensorflow as tf

    from emobed_tf.model import load_model

    C.effective_weights(cfg.mode, cfg.loss.alpha, cfg.loss.beta)  # validates the mode
    if cfg.target not in schema.MODALITIES:
        raise ValueError(f"--target must be one of {schema.MODALITIES}, got {cfg.target!r}")
    sources = resolve_sources(cfg)
    state = _prepare_run_dir(cfg, overwrite)
    os.makedirs(os.path.join(cfg.out, "manifests"), exist_ok=True)
    cfg.save(os.path.join(cfg.out, "config.json"))
    for mod, src in sources.items():
        _atomic_json(os.path.join(cfg.out, "manifests", f"{mod}.json"),
                     {"data_dir": os.path.abspath(src.data_dir), **src.manifest.to_json()})

    keras.utils.set_random_seed(cfg.seed)
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {cfg.precision!r}")
    keras.mixed_precision.set_global_policy(cfg.precision)  # float16 wraps Adam in loss scaling
    strategy = make_strategy(cfg.strategy)
    train_ds, dev_ds = make_datasets(cfg, sources)
    with strategy.scope() if strategy else contextlib.nullcontext():
        if state is not None:
            print(f"Resuming {cfg.out} after epoch {state['epoch']}", flush=True)
            model = load_model(os.path.join(cfg.out, "checkpoints", "last.keras"))
        else:
            model = build_model(cfg, sources)
        if cfg.strategy == "multiworker":
            model.optimizer.build(model.trainable_variables)
    monitor = f"val_{model.score_name}"
    ckpt = make_run_checkpoint(cfg.out, monitor, cfg.patience, state)
    start = ckpt.state["epoch"]
    t0 = time.time()
    if start < cfg.epochs and not ckpt.state["stopped_early"]:
        callbacks = [ckpt, keras.callbacks.TensorBoard(os.path.join(cfg.out, "logs"),
                                                       write_graph=False), *callbacks]
        try:
            if cfg.strategy == "multiworker":
                fit_multiworker(model, strategy, train_ds, cfg, sources, ckpt, start)
            else:
                model.fit(train_ds, validation_data=dev_ds, epochs=cfg.epochs, shuffle=False,
                          initial_epoch=start, callbacks=callbacks, verbose=cfg.verbose)
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
            data_err = _data_error_from(err, sources)
            if data_err is None:
                raise
            raise data_err from None
    best = load_model(os.path.join(cfg.out, "checkpoints", "best.keras"))
    _atomic_save(best, os.path.join(cfg.out, "model.keras"))
    _atomic_json(os.path.join(cfg.out, "history.json"), ckpt.state["history"])
    scores = evaluate_run(best, cfg, sources)
    manifest = sources[cfg.target].manifest
    names = output_names(cfg, manifest)
    result = {"target": cfg.target, "mode": cfg.mode, "alpha": cfg.alpha, "beta": cfg.beta,
              "dataset": cfg.dataset, "task": manifest.task, "out": cfg.out,
              "score_name": model.score_name, "headline": headline_keys(manifest.task, names),
              "best_epoch": ckpt.state["best_epoch"], "epochs_trained": ckpt.state["epoch"],
              "stopped_early": ckpt.state["stopped_early"],
              "train_seconds_this_session": round(time.time() - t0, 1), **scores}
    _atomic_json(os.path.join(cfg.out, "metrics.json"), result)
    return result


def train_or_reuse(cfg: C.TrainConfig, overwrite: bool = False) -> tuple:
    """``(metrics, reused)``: a finished run's metrics, or those of training it now."""
    done = os.path.join(cfg.out, "metrics.json")
    if os.path.isfile(done) and not overwrite:
        with open(done) as fh:
            return json.load(fh), True
    return train(cfg, overwrite=overwrite), False


# --------------------------------------------------------------------------
# CLI


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``train`` and the ablation runner."""
    p.add_argument("--dataset", required=True, choices=sorted(C.DATASETS),
                   help="registered data set (see README)")
    p.add_argument("--data-dir", default="", help="folder with manifest.json and shards")
    p.add_argument("--audio-dir", default="", help="audio from another data folder (corpus)")
    p.add_argument("--video-dir", default="", help="video from another data folder (corpus)")
    p.add_argument("--target", default="audio", choices=schema.MODALITIES)
    p.add_argument("--alpha", type=float, help="weight of the auxiliary modality's loss")
    p.add_argument("--beta", type=float, help="weight of the crossmodal triplet loss")
    p.add_argument("--l2", type=float, help="weight of the L2 term (paper: 1e-4)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--patience", type=int, help="early stopping patience in epochs")
    p.add_argument("--batch-size", type=int, help="target-modality examples per batch")
    p.add_argument("--aux-batch-size", type=int, help="auxiliary examples per batch")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--encoder-layers", type=int)
    p.add_argument("--encoder-units", type=int)
    p.add_argument("--shared-layers", type=int)
    p.add_argument("--shared-units", type=int)
    p.add_argument("--triplet-form", choices=("paper", "hinge", "soft"))
    p.add_argument("--triplet-margin", type=float)
    p.add_argument("--crossmodal-loss", choices=("triplet", "prototype"),
                   help="the beta-weighted crossmodal term: triplet (the paper's batch-hard "
                        "triplet, Eq. 6) or prototype (each modality classified by the other's "
                        "class centroids in the batch)")
    p.add_argument("--temperature", type=float, help="prototype loss softmax temperature")
    p.add_argument("--label-dims", default="", help="regression dims, e.g. arousal or arousal,valence")
    p.add_argument("--label-delay", type=float, help="annotation delay compensation in seconds")
    p.add_argument("--cache", choices=D.CACHE_MODES,
                   help="keep decoded training/dev data in memory: auto (default: when the "
                        "split's shards total at most 1 GiB), memory (always) or none (stream "
                        "every epoch)")
    p.add_argument("--hparams", help="JSON file of hyperparameters, e.g. a search's "
                   "best_hyperparameters.json (explicit options above win)")
    p.add_argument("--strategy", default="none", choices=STRATEGIES,
                   help="tf.distribute: mirrored (devices of one machine) or multiworker "
                        "(machines listed in TF_CONFIG; each worker writes its own --out)")
    p.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="Keras dtype policy; mixed_float16 (with loss scaling) or mixed_bfloat16 "
                        "speed up GPUs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--overwrite", action="store_true", help="discard an existing run folder")


def config_from_args(args, out: str, mode: str) -> C.TrainConfig:
    cfg = default_config(args.dataset, out, args.target, mode)
    if args.dataset == "custom":
        if not (args.data_dir or args.audio_dir or args.video_dir):
            raise DataError("--dataset custom needs --data-dir (or --audio-dir/--video-dir)")
        probe = args.data_dir or args.audio_dir or args.video_dir
        if schema.load_manifest(probe).task == "regression":
            rec = C.DATASETS["recola"]
            cfg = dataclasses.replace(cfg, model=rec.model, data=rec.data, loss=rec.loss)
    if getattr(args, "hparams", None):
        try:
            with open(args.hparams) as fh:
                hp = json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{args.hparams}: cannot read hyperparameters ({err})") from err
        try:
            cfg = apply_hparams(cfg, hp.get("values", hp))
        except ValueError as err:
            raise DataError(f"{args.hparams}: {err}") from err
    model = dataclasses.replace(cfg.model, **{k: v for k, v in {
        "encoder_layers": args.encoder_layers, "encoder_units": args.encoder_units,
        "shared_layers": args.shared_layers, "shared_units": args.shared_units}.items()
        if v is not None})
    loss = dataclasses.replace(cfg.loss, **{k: v for k, v in {
        "alpha": args.alpha, "beta": args.beta, "l2": args.l2, "triplet_form": args.triplet_form,
        "triplet_margin": args.triplet_margin,
        "crossmodal_loss": getattr(args, "crossmodal_loss", None),
        "temperature": getattr(args, "temperature", None)}.items() if v is not None})
    data = dataclasses.replace(cfg.data, **{k: v for k, v in {
        "batch_size": args.batch_size, "auxiliary_batch_size": args.aux_batch_size,
        "label_delay_s": args.label_delay, "cache": getattr(args, "cache", None),
        "label_dims": tuple(d for d in args.label_dims.split(",") if d) or None}.items()
        if v is not None})
    top = {k: v for k, v in {"epochs": args.epochs, "patience": args.patience,
                             "learning_rate": args.learning_rate}.items() if v is not None}
    return dataclasses.replace(cfg, model=model, loss=loss, data=data, data_dir=args.data_dir,
                               audio_dir=args.audio_dir, video_dir=args.video_dir, seed=args.seed,
                               verbose=args.verbose, strategy=getattr(args, "strategy", "none"),
                               precision=getattr(args, "precision", "float32"), **top)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m emobed_tf.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--mode", default="emobed", choices=C.MODES,
                   help="classic (alpha=beta=0), joint (beta=0), triplet (alpha=0), emobed")
    p.add_argument("--out", required=True, help="run folder")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_from_args(args, args.out, args.mode)
        result = train(cfg, overwrite=args.overwrite)
    except (DataError, RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
