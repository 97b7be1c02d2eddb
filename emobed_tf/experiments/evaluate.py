"""Evaluation report of a run, the way AVEC and the OMG-Emotion challenge score.

``python -m emobed_tf.evaluate --run RUN_DIR [--compare OTHER_RUN]``

writes into ``RUN_DIR/report/``:

* ``report.json`` and ``report.md``: dev and test scores of the target
  modality alone, pooled over each partition. Classification: macro-F1
  (headline), micro-F1, UAR, accuracy, per-class F1. Regression: CCC
  (standard and AVEC 2016 variants), PCC, RMSE, before and after the AVEC
  2016 post-processing chain, which is fitted on dev, applied unchanged to
  test and saved as ``RUN_DIR/postprocess.json`` (the export applies it).
* with ``--compare``: this run against the other on the same items (paired,
  two-sided: the exact McNemar test on accuracy and a paired bootstrap of the
  macro-F1 difference; regression has no paired test on one test set, and the
  report says so).
* figures: ``confusion_dev.png`` (classification), ``predictions_dev.png``
  (regression: prediction and gold standard over time), and
  ``tsne_dev.png``: t-SNE of the learnt embeddings of the modalities the
  model has, coloured by emotion and marked by modality (paper Figs. 3-4).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from emobed_tf.data import source
from emobed_tf.data import speakers
from emobed_tf.experiments import experiment
from emobed_tf.experiments import figures
from emobed_tf.model import metrics
from emobed_tf.experiments import postprocess
from emobed_tf.experiments import significance
from emobed_tf.io import markdown_table, write_json_and_markdown
from emobed_tf.experiments.scoring import predict_split, score_predictions
from emobed_tf.experiments.rundir import RunDir
from emobed_tf.records.schema import DataError


def _sources(run: RunDir, model, cfg):
    """The run's data folders, with the run's speaker folds when it was cross-validated."""
    out = {}
    for mod in model.encoders:
        data_dir = run.data_dir(mod)
        if data_dir:
            out[mod] = source.Source.open(data_dir)
    if cfg.data.speaker_folds and cfg.target in out:
        out = speakers.speaker_fold_sources(cfg, out)
    return out


def evaluate_classification(preds: dict, names) -> dict:
    """Per split: the scorer's scores with per-class F1 and the confusion matrix."""
    return {split: {**score_predictions(p, names, detail=True), "n": int(len(p.pooled()[0]))}
            for split, p in preds.items()}


def evaluate_regression(preds: dict, names, frame_step_s: float) -> tuple:
    """Per split: raw scores and, with the AVEC 2016 chain fitted on dev, post-processed ones."""
    res, chain = {}, None
    if "dev" in preds:
        chain = postprocess.fit_chain(preds["dev"].gold, preds["dev"].pred, names, frame_step_s)
    for split, p in preds.items():
        entry = {"raw": score_predictions(p, names), "n": int(len(p.pooled()[0]))}
        if chain:
            post = postprocess.apply_chain(p.pred, chain, names)
            entry["postprocessed"] = score_predictions(
                dataclasses.replace(p, pred=post), names)
        res[split] = entry
    return res, chain


NO_PAIRED_TEST = ("no paired test on one test set for regression: the frames of a recording "
                  "are not independent items; compare systems over speaker folds with "
                  "emobed_tf.crossval")


def compare_items(this: dict, other: dict, task: str, names, n_boot: int = 2000) -> dict:
    """``this`` run against ``other`` on the same items, per split both were scored on
    (``{split: Predictions}`` each): classification, the exact McNemar test on the items
    each gets right and the paired bootstrap of the macro-F1 difference
    (:mod:`emobed_tf.experiments.significance`); regression, no test (said so).

    Two-sided; ``diff`` is this run minus the other. Runs scored on other items (another
    fold, another corpus) are refused."""
    from sklearn.metrics import f1_score

    out = {}
    for split in ("dev", "test"):
        if split not in this or split not in other:
            continue
        a, b = this[split], other[split]
        if list(a.recordings) != list(b.recordings):
            raise DataError(f"{split}: the two runs were not scored on the same items "
                            f"({len(a.recordings)} and {len(b.recordings)} recordings, or another "
                            "order); a paired comparison needs the same test set")
        if task != "classification":
            out[split] = {"test": "none", "why": NO_PAIRED_TEST}
            continue
        y = np.asarray(a.gold)
        pa, pb = np.argmax(np.asarray(a.pred), 1), np.argmax(np.asarray(b.pred), 1)
        labels = list(range(len(names)))
        f1 = lambda t, p: f1_score(t, p, labels=labels, average="macro", zero_division=0)
        out[split] = {"accuracy": {**significance.mcnemar_exact(pa == y, pb == y),
                                   "diff": float(np.mean(pa == y) - np.mean(pb == y))},
                      "f1_macro": significance.paired_bootstrap(y, pa, pb, f1, n_boot=n_boot)}
    return out


def comparison_lines(comparison: dict) -> list:
    """Markdown lines of :func:`compare_items`'s result."""
    rows, notes = [], []
    for split, t in comparison.items():
        if t.get("test") == "none":
            notes.append(f"{split}: {t['why']}.")
            continue
        acc, f1 = t["accuracy"], t["f1_macro"]
        rows.append([split, f"{100 * f1['diff']:+.2f} pt", f"[{100 * f1['ci_low']:+.2f}, "
                     f"{100 * f1['ci_high']:+.2f}]", f"{f1['p']:.4f}",
                     f"{100 * acc['diff']:+.2f} pt", f"{acc['only_a']}/{acc['only_b']}",
                     f"{acc['p']:.4f}"])
    lines = []
    if rows:
        lines += _md_table(rows, ["split", "macro-F1 diff", "95 % CI (bootstrap)",
                                  "p (paired bootstrap)", "accuracy diff",
                                  "items right only here / only there", "p (exact McNemar)"])
        lines += ["", "Paired on the same items, two-sided: a paired bootstrap of the macro-F1 "
                  "difference (2,000 resamples of the items) and the exact McNemar test on the "
                  "items one system gets right and the other wrong. One test set says nothing "
                  "about other speakers: compare over speaker folds with emobed_tf.crossval."]
    return lines + notes


def run_predictions(run_dir: str, with_embeddings: bool = False) -> tuple:
    """``(run, cfg, model, sources, names, task, {split: Predictions})`` of a finished run
    on the dev and test partitions of its target (its speaker fold when it has one)."""
    run = RunDir(run_dir)
    cfg = run.config()
    model = run.load_model()
    sources = _sources(run, model, cfg)
    if cfg.target not in sources:
        raise DataError(f"{run_dir}: the target's data folder (manifests/{cfg.target}.json) "
                        "is not available")
    src = sources[cfg.target]
    opts = experiment.pipeline_options(cfg, src.manifest)
    names = experiment.output_names(cfg, src.manifest)
    splits = [s for s in ("dev", "test") if src.manifest.modalities[cfg.target].shards.get(s)]
    preds = {s: predict_split(model, src, cfg.target, s, cfg.data.eval_batch_size, opts,
                              with_embeddings=with_embeddings and s == "dev") for s in splits}
    return run, cfg, model, sources, names, src.manifest.task, preds


# -- figures -----------------------------------------------------------------


def plot_confusion(cm, names, path, title):
    plt = figures.pyplot()
    cm = np.asarray(cm, float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="recall")
    figures.save(fig, path)


def plot_predictions(p, names, path, frame_step_s, chain=None):
    plt = figures.pyplot()
    k = len(names)
    fig, axes = plt.subplots(k, 1, figsize=(10, 2.6 * k), squeeze=False)
    gold, pred = p.gold[0], p.pred[0]
    post = postprocess.apply_chain([pred], chain, names)[0] if chain else None
    t = np.arange(len(gold)) * frame_step_s
    for i, n in enumerate(names):
        ax = axes[i, 0]
        ax.plot(t, gold[:, i], color="black", lw=1.5, label="gold standard")
        ax.plot(t, pred[:, i], color="tab:blue", lw=0.8, alpha=0.7, label="prediction")
        if post is not None:
            ax.plot(t, post[:, i], color="tab:red", lw=1, label="post-processed")
        ax.set_ylabel(n)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel(f"time (s), recording {p.recordings[0]}")
    figures.save(fig, path, dpi=110)


def tsne_points(preds_by_mod: dict, task: str, names, max_points: int, seed: int,
                thresholds=(0.0,)):
    """(2-D points, emotion labels, modality of each point) for the t-SNE figure."""
    from sklearn.manifold import TSNE

    from emobed_tf.model.losses import bin_labels

    rng = np.random.default_rng(seed)
    embs, labels, mods = [], [], []
    for mod, p in preds_by_mod.items():
        if task == "classification":
            e, lab = np.asarray(p.embeddings), np.asarray(p.gold)
        else:
            e = np.concatenate(p.embeddings)
            lab = np.asarray(bin_labels(np.concatenate(p.gold)[:, :1], thresholds))
        idx = rng.permutation(len(e))[:max_points]
        embs.append(e[idx])
        labels.append(lab[idx])
        mods += [mod] * len(idx)
    x = np.concatenate(embs)
    perp = float(min(30, max(2, (len(x) - 1) / 3)))
    pts = TSNE(2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    return pts, np.concatenate(labels), np.asarray(mods)


def plot_tsne(pts, labels, mods, label_names, path, title):
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    markers = {"audio": "o", "video": "x"}
    cmap = plt.get_cmap("tab10")
    for m in sorted(set(mods)):
        for c in sorted(set(labels.tolist())):
            sel = (mods == m) & (labels == c)
            if sel.any():
                ax.scatter(pts[sel, 0], pts[sel, 1], s=12, marker=markers[m], color=cmap(c % 10),
                           alpha=0.7, label=f"{m}: {label_names[c]}")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, ncol=2, loc="best")
    figures.save(fig, path)


# -- report --------------------------------------------------------------------


def _md_table(rows, header):
    return markdown_table(header, rows).split("\n")


def format_report(rep: dict) -> str:
    lines = [f"# Evaluation of {rep['run']}", "",
             f"target **{rep['target']}**, mode **{rep['mode']}** (alpha={rep['alpha']:g}, "
             f"beta={rep['beta']:g}), data set {rep['dataset']}; scores of the target modality "
             "alone, pooled over each partition.", ""]
    names = rep["names"]
    if rep["task"] == "classification":
        keys = list(metrics.CLASSIFICATION_SCORES)
        rows = [[s] + [f"{rep['scores'][s][k]:.4f}" for k in keys] + [str(rep["scores"][s]["n"])]
                for s in rep["scores"]]
        lines += _md_table(rows, ["split"] + keys + ["n"])
        lines += ["", "macro-F1 is the headline; micro-F1 is the OMG challenge script's F1 "
                  "(= accuracy for single-label data).", "", "Per-class F1 (dev):", ""]
        if "dev" in rep["scores"]:
            per = rep["scores"]["dev"]["f1_per_class"]
            lines += _md_table([[n, "-" if per[n] is None else f"{per[n]:.3f}"] for n in names],
                               ["class", "F1"])
    else:
        rows = []
        for s, e in rep["scores"].items():
            for kind in ("raw", "postprocessed"):
                if kind in e:
                    rows.append([s, kind] + [f"{e[kind][f'ccc_{n}']:.4f}" for n in names]
                                + [f"{e[kind][f'ccc_avec2016_{n}']:.4f}" for n in names]
                                + [f"{e[kind][f'pcc_{n}']:.4f}" for n in names])
        lines += _md_table(rows, ["split", "predictions"] + [f"CCC {n}" for n in names]
                           + [f"CCC-AVEC16 {n}" for n in names] + [f"PCC {n}" for n in names])
        if rep.get("postprocess"):
            lines += ["", "Post-processing fitted on dev (applied unchanged to test and in the "
                      "export):", ""]
            lines += _md_table([[n, str(p["median_window"]), f"{p['bias']}" if p["bias"] is not None
                                 else "-", f"{p['scale']:.3f}" if p["scale"] is not None else "-",
                                 str(p["shift"])] for n, p in rep["postprocess"].items()],
                               ["dim", "median window (frames)", "bias", "scale", "shift (frames)"])
    if rep.get("comparison"):
        lines += ["", f"## Against {rep['compare_run']}", ""] + comparison_lines(
            rep["comparison"])
    if rep.get("figures"):
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in rep["figures"]]
    return "\n".join(lines) + "\n"


def evaluate(run_dir: str, compare: str | None = None, tsne_points_max: int = 600,
             figures: bool = True) -> dict:
    """Scores, post-processing, figures and report of a finished run."""
    run, cfg, model, sources, names, task, preds = run_predictions(run_dir, with_embeddings=True)
    src = sources[cfg.target]
    out_dir = run.report_dir
    os.makedirs(out_dir, exist_ok=True)
    rep = {"run": run_dir, "target": cfg.target, "mode": cfg.mode, "alpha": cfg.alpha,
           "beta": cfg.beta, "dataset": cfg.dataset, "task": task, "names": names,
           "figures": []}
    if task == "classification":
        rep["scores"] = evaluate_classification(preds, names)
    else:
        rep["scores"], chain = evaluate_regression(preds, names, src.manifest.frame_step_s)
        rep["postprocess"] = chain
        if chain:
            run.write_postprocess(chain)
    if compare:
        rep["compare_run"] = compare
        rep["comparison"] = compare_items(preds, run_predictions(compare)[-1], task, names)
    if figures and "dev" in preds:
        if task == "classification":
            plot_confusion(rep["scores"]["dev"]["confusion"], names,
                           os.path.join(out_dir, "confusion_dev.png"),
                           f"{cfg.target} {cfg.mode}: dev confusion")
            rep["figures"].append("confusion_dev.png")
        else:
            plot_predictions(preds["dev"], names, os.path.join(out_dir, "predictions_dev.png"),
                             src.manifest.frame_step_s, rep.get("postprocess"))
            rep["figures"].append("predictions_dev.png")
        by_mod = {cfg.target: preds["dev"]}
        for mod, s in sources.items():
            if mod != cfg.target and s.manifest.modalities.get(mod, None) and \
                    s.manifest.modalities[mod].shards.get("dev"):
                by_mod[mod] = predict_split(model, s, mod, "dev", cfg.data.eval_batch_size,
                                            experiment.pipeline_options(cfg, s.manifest),
                                            with_embeddings=True)
        pts, labels, mods = tsne_points(by_mod, task, names, tsne_points_max, cfg.seed,
                                        cfg.loss.triplet_thresholds)
        label_names = names if task == "classification" else [f"low {names[0]}",
                                                              f"high {names[0]}"]
        plot_tsne(pts, labels, mods, label_names, os.path.join(out_dir, "tsne_dev.png"),
                  f"{cfg.mode} ({cfg.target} target): dev embeddings")
        rep["figures"].append("tsne_dev.png")
    write_json_and_markdown(out_dir, "report", rep, format_report(rep))
    return rep
