"""One experiment: configuration -> data sources -> pipelines -> model -> trained run folder.

This is the library that ``train``, ``compare``, ``sweep``, ``crossval``,
``evaluate`` and ``tuning`` run on:

* :func:`resolve_sources` opens the data folders a configuration needs
  (with speaker folds assigned at read time when it has them);
* :func:`make_datasets` and :func:`build_model` assemble the mixed training
  pipeline, the dev pipeline and the compiled :class:`~emobed_tf.model.emobed.EmoBed`;
* :func:`score` is the one scorer of a model on a partition (train's
  metrics, the multi-worker loop's dev score and evaluate all use it);
* :func:`run` trains (or resumes) one run into its :class:`~emobed_tf.experiments.rundir.RunDir`
  and returns the content of its ``metrics.json``.

>>> from emobed_tf import configs as C
>>> cfg = configs.default_config("demo", out="runs/demo-emobed")
>>> cfg.alpha, cfg.beta, cfg.model.encoder_layers
(0.5, 0.3, 1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time

from emobed_tf import configs
from emobed_tf.data import pipeline, speakers
from emobed_tf.data.source import check_compatible, shard_paths, Source
from emobed_tf.records import parse
from emobed_tf.records import schema
from emobed_tf.records.manifest import Manifest
from emobed_tf.experiments.rundir import make_run_checkpoint, RunDir, RunError
from emobed_tf.records.schema import DataError

__all__ = ["resolve_sources", "pipeline_options", "output_names",
           "build_model", "make_datasets", "score", "score_run", "run", "run_or_reuse",
           "format_summary", "RunError"]


# --------------------------------------------------------------------------
# data


def resolve_sources(cfg: configs.TrainConfig) -> dict:
    """``{modality: Source}`` for the modalities the run uses."""
    preset = configs.preset_for(cfg.dataset)
    if preset.generated:
        from emobed_tf.experiments import demo

        base = cfg.data_dir or demo.ensure_demo(cfg.dataset)
    else:
        base = cfg.data_dir or preset.default_dir
    needed = [cfg.target]
    aux = configs.auxiliary_of(cfg.target)
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
        src = Source.open(folder)
        if preset.task and src.manifest.task != preset.task:
            raise DataError(f"{folder}: manifest task {src.manifest.task!r} but --dataset "
                            f"{cfg.dataset} is {preset.task}")
        if mod not in src.manifest.modalities:
            what = "the target" if mod == cfg.target else f"the auxiliary modality in {cfg.mode} mode"
            raise DataError(f"{folder}: has no {mod} features, which {what} needs "
                            f"(it has {sorted(src.manifest.modalities)}); "
                            f"pass --{mod}-dir or use --mode classic")
        sources[mod] = src
    if len(sources) > 1:
        check_compatible(sources)
    if cfg.data.speaker_folds:
        sources = speakers.speaker_fold_sources(cfg, sources)
    return sources


def check_out_is_not_data(out: str, sources: dict) -> None:
    """A run folder is never, nor holds, nor lies inside a data folder it reads.

    (``--overwrite`` replaces the whole run folder, and a data folder must
    never go with it.)
    """
    o = os.path.realpath(out)
    for mod, src in sources.items():
        d = os.path.realpath(src.data_dir)
        if o == d or o.startswith(d + os.sep) or d.startswith(o + os.sep):
            where = ("is" if o == d else "lies inside" if o.startswith(d + os.sep)
                     else "holds")
            raise RunError(f"--out {out} {where} the {mod} data folder {src.data_dir}: "
                           "a run folder and a data folder must be apart; choose another --out")


def pipeline_options(cfg: configs.TrainConfig, manifest: Manifest) -> pipeline.PipelineOptions:
    """The tf.data options of ``cfg`` for a data set described by ``manifest``."""
    cols = ()
    if manifest.task == "regression" and cfg.data.label_dims:
        unknown = [d for d in cfg.data.label_dims if d not in manifest.label_names]
        if unknown:
            raise DataError(f"unknown label dimensions {unknown}; the data has "
                            f"{list(manifest.label_names)}")
        cols = tuple(manifest.label_names.index(d) for d in cfg.data.label_dims)
    delay = int(round(cfg.data.label_delay_s / manifest.frame_step_s)) \
        if manifest.task == "regression" else 0
    return pipeline.PipelineOptions(window=cfg.data.window, window_shift=cfg.data.window_shift,
                             shuffle_buffer=cfg.data.shuffle_buffer, label_delay_frames=delay,
                             label_dims=cols, cache=cfg.data.cache,
                             cache_limit_mb=cfg.data.cache_limit_mb,
                             normalize=cfg.data.normalize)


def output_names(cfg: configs.TrainConfig, manifest: Manifest) -> list:
    """Class names (classification) or predicted dimensions (regression)."""
    if manifest.task == "regression" and cfg.data.label_dims:
        return list(cfg.data.label_dims)
    return list(manifest.label_names)


def make_datasets(cfg: configs.TrainConfig, sources: dict):
    """(train, dev) datasets: mixed (or target-only) training, target-only dev."""
    manifest = sources[cfg.target].manifest
    opts = pipeline_options(cfg, manifest)
    aux_bs = cfg.data.auxiliary_batch_size or cfg.data.batch_size
    if len(sources) > 1:
        sizes = {cfg.target: cfg.data.batch_size}
        sizes.update({m: aux_bs for m in sources if m != cfg.target})
        train = pipeline.make_mixed_dataset(sources, cfg.target, sizes, "train", seed=cfg.seed,
                                     options=opts)
    else:
        single = pipeline.make_modality_dataset(sources[cfg.target], cfg.target, "train",
                                         cfg.data.batch_size, training=True, seed=cfg.seed,
                                         options=opts)
        train = single.map(lambda b: {cfg.target: b})
    dev_opts = dataclasses.replace(opts, window=0)
    dev = pipeline.make_modality_dataset(sources[cfg.target], cfg.target, "dev",
                                  cfg.data.eval_batch_size, options=dev_opts)
    dev = dev.map(lambda b: {cfg.target: b})
    return train, dev


# --------------------------------------------------------------------------
# model


def data_encoder_type(cfg: configs.TrainConfig, sources: dict) -> str:
    """What ``--encoder-type auto`` means for the data read: ``dense`` when every item of
    every modality read has one frame (pooled features), else ``gru``."""
    from emobed_tf.model.emobed import resolve_encoder_type

    return resolve_encoder_type("auto", [(s.manifest, m) for m, s in sources.items()])


def resolve_config(cfg: configs.TrainConfig, sources: dict) -> configs.TrainConfig:
    """``cfg`` with its ``auto`` settings (encoder type, batch size, epochs, select_on)
    decided for the data read (:func:`emobed_tf.configs.resolved`)."""
    return configs.resolved(cfg, data_encoder_type(cfg, sources))


def resolve_config_space(cfg: configs.TrainConfig, model) -> str | None:
    """Where the run's triplet distances were measured (``raw``/``unit``), or None when
    it trained no triplet term (classic, joint, the prototype loss)."""
    if cfg.beta > 0 and cfg.loss.crossmodal_loss == "triplet":
        return model.triplet_space
    return None


def effective_l2(cfg: configs.TrainConfig, encoder_type: str) -> float:
    """The L2 weight a model of ``encoder_type`` (resolved) trains with: ``--dense-l2`` for
    the dense form, ``--l2`` (the paper's) for the GRU form.

    >>> cfg = configs.apply_hparams(configs.TrainConfig(dataset="demo", out="unused"),
    ...                             {"l2": 1e-4, "dense_l2": 1e-2})
    >>> effective_l2(cfg, "gru"), effective_l2(cfg, "dense")
    (0.0001, 0.01)
    """
    return cfg.loss.dense_l2 if encoder_type == "dense" else cfg.loss.l2


def build_model(cfg: configs.TrainConfig, sources: dict):
    """A compiled :class:`emobed_tf.model.emobed.EmoBed` for ``cfg``.

    ``encoder_type`` ``auto`` is resolved here, once, from the manifests of
    the data read (``dense`` when every item of every modality read has one
    frame); the model records the resolved type (``model.encoder_type``) and
    trains with that type's L2 weight (:func:`effective_l2`, ``model.l2``).
    """
    import keras

    from emobed_tf.model.emobed import EmoBed, resolve_encoder_type

    manifest = sources[cfg.target].manifest
    names = output_names(cfg, manifest)
    dims = {m: s.manifest.modalities[m].dim for m, s in sources.items()}
    lc = cfg.loss
    model_cfg = dataclasses.asdict(cfg.model)
    model_cfg["encoder_type"] = resolve_encoder_type(
        cfg.model.encoder_type, [(s.manifest, m) for m, s in sources.items()])
    loss_cfg = {k: v for k, v in dataclasses.asdict(lc).items()
                if k not in ("alpha", "beta", "dense_l2")}
    loss_cfg["l2"] = effective_l2(cfg, model_cfg["encoder_type"])
    model = EmoBed(task=manifest.task, num_outputs=len(names), input_dims=dims,
                   target=cfg.target, alpha=cfg.alpha, beta=cfg.beta, **model_cfg, **loss_cfg,
                   output_names=names)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
    return model


# --------------------------------------------------------------------------
# scoring


def score(model, source: Source, modality: str, split: str, cfg: configs.TrainConfig,
          detail: bool = False) -> dict:
    """Scores of ``model`` on ``split`` of ``source`` by ``modality`` alone, pooled.

    Classification: macro-F1 (headline), micro-F1, UAR, accuracy; regression:
    CCC (standard and AVEC 2016), PCC, RMSE per dimension and the mean CCC.
    ``n`` is the number of items (or frames) pooled.
    """
    from emobed_tf.experiments.scoring import predict_split, score_predictions

    p = predict_split(model, source, modality, split, cfg.data.eval_batch_size,
                      pipeline_options(cfg, source.manifest))
    out = score_predictions(p, output_names(cfg, source.manifest), detail=detail)
    out["n"] = int(len(p.pooled()[0]))
    return out


def dev_logs(model, cfg: configs.TrainConfig, sources: dict) -> dict:
    """The target's dev score and dev loss under the names ``fit`` logs them
    (``val_f1_macro`` or ``val_ccc``, and ``val_target_loss``), from one pass of the one
    scorer over the dev items: the multi-worker loop's dev logs."""
    from emobed_tf.experiments.scoring import predict_split, prediction_loss, score_predictions
    from emobed_tf.model.metrics import dev_key, dev_monitor

    src = sources[cfg.target]
    task = src.manifest.task
    p = predict_split(model, src, cfg.target, "dev", cfg.data.eval_batch_size,
                      pipeline_options(cfg, src.manifest))
    scores = score_predictions(p, output_names(cfg, src.manifest))
    return {dev_monitor(task): scores[dev_key(task)],
            "val_target_loss": prediction_loss(p, cfg.loss.regression_loss)}


def score_run(model, cfg: configs.TrainConfig, sources: dict) -> dict:
    """Dev and test scores of the target modality alone."""
    src = sources[cfg.target]
    return {split: score(model, src, cfg.target, split, cfg) for split in ("dev", "test")
            if src.manifest.modalities[cfg.target].shards.get(split)}


def format_summary(result: dict) -> str:
    """The readable end-of-run table of ``metrics.json``'s content."""
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


# --------------------------------------------------------------------------
# the in-memory fast path (emobed_tf.data.memory)


def load_memory_splits(cfg: configs.TrainConfig, sources: dict) -> dict | None:
    """``{(modality, split): InMemorySplit}`` of what the run reads, when it takes the
    in-memory path (:func:`emobed_tf.data.memory.applies`), else None."""
    import tensorflow as tf

    from emobed_tf.data import memory

    target = sources[cfg.target]
    opts = pipeline_options(cfg, target.manifest)
    if not memory.applies(sources, cfg.target, opts, target.manifest.task, cfg.strategy):
        if cfg.data.labels_per_class:
            raise configs.ConfigError(
                f"--labels-per-class {cfg.data.labels_per_class} needs the in-memory path "
                "(classification data that fits --cache-limit-mb, or --cache memory)")
        return None
    out = {}
    for mod, src in sources.items():
        splits = [s for s in (("train", "dev", "test") if mod == cfg.target else ("train",))
                  if s != "test" or src.manifest.modalities[mod].shards.get("test")]
        try:
            read = memory.load_splits(src, mod, splits, pipeline_options(cfg, src.manifest))
        except (tf.errors.OpError, UnicodeDecodeError) as err:
            data_err = _data_error_from(err, sources)
            if data_err is None:
                raise
            raise data_err from None
        out.update({(mod, s): a for s, a in read.items()})
    train = out[cfg.target, "train"]
    out[cfg.target, "train"] = memory.labelled_subset(train, cfg.data.labels_per_class, cfg.seed)
    return out


def checkpoint_interval(cfg: configs.TrainConfig, in_memory: bool) -> int:
    """Epochs between checkpoints: ``--checkpoint-every``, or (0, auto) every epoch for
    streamed data and a tenth of the epochs (at least 1) for data held in memory.

    >>> cfg = configs.TrainConfig(dataset="demo", out="unused", epochs=300)
    >>> checkpoint_interval(cfg, True), checkpoint_interval(cfg, False)
    (30, 1)
    """
    if cfg.checkpoint_every:
        return cfg.checkpoint_every
    return max(1, cfg.epochs // 10) if in_memory else 1


def memory_stream(cfg: configs.TrainConfig, splits: dict, start_epoch: int) -> tuple:
    """``(dataset, steps_per_epoch)``: the run's training batches from its arrays."""
    from emobed_tf.data import memory

    aux_bs = cfg.data.auxiliary_batch_size or cfg.data.batch_size
    train = {m: a for (m, s), a in splits.items() if s == "train"}
    sizes = {m: cfg.data.batch_size if m == cfg.target else aux_bs for m in train}
    return memory.make_training_stream(train, cfg.target, sizes, cfg.seed, start_epoch)


def _memory_predictions(model, cfg, splits, split):
    from emobed_tf.experiments.scoring import predict_arrays

    return predict_arrays(model, splits[cfg.target, split], cfg.target, model.task,
                          cfg.data.eval_batch_size)


def memory_dev_logs(model, cfg: configs.TrainConfig, splits: dict, names) -> dict:
    """:func:`dev_logs` on the dev split held in memory (the same scorer and keys)."""
    from emobed_tf.experiments.scoring import prediction_loss, score_predictions
    from emobed_tf.model.metrics import dev_key, dev_monitor

    p = _memory_predictions(model, cfg, splits, "dev")
    scores = score_predictions(p, names)
    return {dev_monitor(model.task): scores[dev_key(model.task)],
            "val_target_loss": prediction_loss(p, cfg.loss.regression_loss)}


def memory_score_run(model, cfg: configs.TrainConfig, sources: dict, splits: dict) -> dict:
    """:func:`score_run` on the splits held in memory (the same scorer and keys)."""
    from emobed_tf.experiments.scoring import score_predictions

    names = output_names(cfg, sources[cfg.target].manifest)
    out = {}
    for split in ("dev", "test"):
        if (cfg.target, split) in splits:
            p = _memory_predictions(model, cfg, splits, split)
            out[split] = score_predictions(p, names)
            out[split]["n"] = int(len(p.pooled()[0]))
    return out


def scheduled_dev(logs_fn, every: int, epochs: int, each_epoch: bool):
    """A Keras callback that adds the dev logs ``logs_fn(model)`` to an epoch's logs: every
    epoch (``each_epoch``: early stopping and the kept epoch select on them), else every
    ``every`` epochs and at the last one. Put it before the checkpointing callback."""
    import keras

    class ScheduledDev(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            n = epoch + 1
            if logs is not None and (each_epoch or n % every == 0 or n == epochs):
                logs.update(logs_fn(self.model))

    return ScheduledDev()


# --------------------------------------------------------------------------
# the run


def _data_error_from(err, sources):
    """Turns a tf.data failure into a DataError naming the shard."""
    shards = [(p, src.manifest.compression) for src in sources.values()
              for mod in src.manifest.modalities for split in ("train", "dev", "test")
              for p in shard_paths(src, mod, split, required=False)]
    return parse.data_error_from(err, shards)


def run(cfg: configs.TrainConfig, overwrite: bool = False, callbacks=()) -> dict:
    """Trains (or resumes) one run and writes its run folder. Returns metrics.json's content.

    The inputs are checked before anything in the folder changes. With
    ``overwrite`` a finished run is replaced only once the new one has
    finished: the new run trains in a sibling folder (``OUT.overwriting``)
    that is moved into place at the end. The folder is locked while the
    run trains; a non-finite loss stops it with a :class:`RunError` and it
    is never marked finished. ``callbacks`` are extra Keras callbacks, run
    after the checkpointing one.
    """
    sources = resolve_sources(cfg)  # validates the inputs before any file changes
    check_out_is_not_data(cfg.out, sources)
    target = RunDir(cfg.out)
    if overwrite and os.path.isdir(target.path) and os.listdir(target.path):
        if not target.is_run:
            raise RunError(f"{target.path}: --overwrite replaces only a run folder of "
                           f"emobed_tf (one with {RunDir.CONFIG}), and this folder is not "
                           "one; choose another --out")
        with target.lock():
            stage = target.staging()
            staged_cfg = dataclasses.replace(cfg, out=stage.path)
            if stage.finished:  # a previous overwrite that died while moving into place
                shutil.rmtree(stage.path)
            result = _run_in(stage, staged_cfg, sources, callbacks)
            result["out"] = cfg.out
            cfg.save(stage.config_path)
            stage.write_metrics(result)
            target.replace_with(stage)
        return result
    with target.lock():
        return _run_in(target, cfg, sources, callbacks)


def _run_in(rd: RunDir, cfg: configs.TrainConfig, sources: dict, callbacks=()) -> dict:
    import keras
    import tensorflow as tf

    if keras.backend.backend() != cfg.backend:
        raise configs.ConfigError(f"the run asks for the {cfg.backend} backend but Keras runs on "
                            f"{keras.backend.backend()}: start Python with "
                            f"KERAS_BACKEND={cfg.backend} (train --backend does it)")

    from emobed_tf.experiments.distribute import fit_multiworker, make_strategy
    from emobed_tf.model.metrics import headline_keys, selection

    enc = data_encoder_type(cfg, sources)
    state = rd.check_resumable(cfg, enc)
    rd.begin(cfg, sources)  # as given: auto settings stay auto in config.json
    cfg = configs.resolved(cfg, enc)  # what trains (metrics.json records it)
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(cfg.precision)  # float16 wraps Adam in loss scaling
    strategy = make_strategy(cfg.strategy)
    memory_splits = load_memory_splits(cfg, sources)  # None: streamed from the shards
    if memory_splits is None:
        train_ds, dev_ds = make_datasets(cfg, sources)
    else:
        train_ds = dev_ds = None
    with strategy.scope() if strategy else contextlib.nullcontext():
        if state is not None:
            print(f"Resuming {cfg.out} after epoch {state['epoch']}", flush=True)
            model = rd.load_model("last")
        else:
            model = build_model(cfg, sources)  # compiling builds the optimizer (model.py)
    monitor, higher_is_better = selection(model.task, cfg.select_on)
    every = checkpoint_interval(cfg, memory_splits is not None)
    ckpt = make_run_checkpoint(rd, monitor, cfg.patience, state, higher_is_better, every)
    start = ckpt.state["epoch"]
    t0 = time.time()
    if start < cfg.epochs and not ckpt.state["stopped_early"]:
        try:
            if cfg.strategy == "multiworker":
                fit_multiworker(model, strategy, train_ds, cfg.epochs, start, ckpt,
                                lambda m: dev_logs(m, cfg, sources), cfg.verbose)
            elif memory_splits is not None:  # the in-memory fast path (emobed_tf.data.memory)
                train_ds, steps = memory_stream(cfg, memory_splits, start)
                names = output_names(cfg, sources[cfg.target].manifest)
                dev = scheduled_dev(lambda m: memory_dev_logs(m, cfg, memory_splits, names),
                                    every, cfg.epochs, each_epoch=monitor is not None)
                model.fit(train_ds, epochs=cfg.epochs, steps_per_epoch=steps, shuffle=False,
                          initial_epoch=start, verbose=cfg.verbose,
                          callbacks=[dev, ckpt, *callbacks])
            else:
                # shuffle=False: the pipeline shuffles (Keras warns that it ignores True)
                model.fit(train_ds, validation_data=dev_ds, epochs=cfg.epochs, shuffle=False,
                          initial_epoch=start, verbose=cfg.verbose,
                          callbacks=[ckpt, *callbacks])
        except (tf.errors.OpError, UnicodeDecodeError) as err:
            data_err = _data_error_from(err, sources)
            if data_err is None:
                raise
            raise data_err from None
    ckpt.flush()  # the epochs since the last checkpoint (fit's on_train_end did it already)
    if ckpt.state["best_epoch"] is None:
        raise RunError(f"{rd.path}: no epoch finished, so there is no model to save")
    if monitor is None and ckpt.state["epoch"] == cfg.epochs and start < cfg.epochs:
        best = model  # --select-on last, trained here to the end: the model in memory
    else:
        best = rd.load_model("best" if monitor is not None else "last")
    rd.save_model(best)
    rd.write_history(ckpt.state["history"])
    manifest = sources[cfg.target].manifest
    names = output_names(cfg, manifest)
    result = {"target": cfg.target, "mode": cfg.mode, "alpha": cfg.alpha, "beta": cfg.beta,
              "dataset": cfg.dataset, "task": manifest.task, "out": cfg.out,
              "score_name": model.score_name, "headline": headline_keys(manifest.task, names),
              "encoder_type": best.encoder_type,  # what ran (auto resolved)
              "triplet_space": resolve_config_space(cfg, best),  # where d+ - d- was measured
              "l2": best.l2,  # the resolved type's L2 weight (--l2 or --dense-l2)
              "select_on": cfg.select_on, "monitor": monitor,  # what chose best_epoch
              "batch_size": cfg.data.batch_size, "max_epochs": cfg.epochs,  # auto resolved
              "best_epoch": ckpt.state["best_epoch"], "epochs_trained": ckpt.state["epoch"],
              "stopped_early": ckpt.state["stopped_early"],
              "train_seconds_this_session": round(time.time() - t0, 1),
              "in_memory": memory_splits is not None, "checkpoint_every": every,
              "target_train_items": (len(memory_splits[cfg.target, "train"])
                                     if memory_splits is not None else None),
              **(score_run(best, cfg, sources) if memory_splits is None
                 else memory_score_run(best, cfg, sources, memory_splits))}
    rd.write_metrics(result)
    return result


def run_or_reuse(cfg: configs.TrainConfig, overwrite: bool = False) -> tuple:
    """``(metrics, reused)``: a finished run's metrics, or those of training it now."""
    rd = RunDir(cfg.out)
    if rd.finished and not overwrite:
        # a run that never reads the auxiliary (classic) is the same whatever corpus is named;
        # every other setting changes the result, the number of epochs included
        aux = configs.auxiliary_of(cfg.target)
        ignore = () if cfg.alpha > 0 or cfg.beta > 0 else (f"{aux}_dir",)
        # compared as resolved for the data the run read (its recorded encoder type; runs
        # written before it was recorded were GRU models)
        enc = rd.metrics().get("encoder_type", "gru")
        other = rd.other_settings(cfg, "a finished run", "pass --overwrite to train it again, "
                                  "or choose another --out", ignore, reuse=True,
                                  encoder_type=enc)
        if other:
            raise RunError(other)
        return rd.metrics(), True
    return run(cfg, overwrite=overwrite), False
