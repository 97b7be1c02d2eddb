"""The library of ``python -m emobed_tf.crossval``: speaker-independent cross-validation of
the paper's systems (the folds themselves: :func:`emobed_tf.data.speakers.make_folds`), paired
tests over folds, the report."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from emobed_tf import configs
from emobed_tf.data import speakers
from emobed_tf.experiments import experiment, figures, significance
from emobed_tf.io import markdown_table


# --------------------------------------------------------------------------
# statistics


def summarise(results: dict, keys, baseline: str = "classic") -> dict:
    """Per system: per-fold means, mean +- sd over fold x seed runs, and the paired analysis
    against ``baseline`` (:func:`~emobed_tf.experiments.significance.paired_analysis`: fold
    means as the units, 95 % t interval, Wilcoxon and sign p; Holm's adjustment of the
    Wilcoxon p over the family of systems compared with ``baseline`` on the headline key).

    ``results``: ``{mode: {(fold, seed): {key: test score}}}``. The probe is compared in
    :func:`against_probe`, not here.
    """
    out = {"keys": list(keys), "baseline": baseline if baseline in results else None,
           "systems": {}}
    family = []
    for mode, runs in results.items():
        row = {"n_runs": len(runs)}
        for k in keys:
            vals = np.array([r[k] for r in runs.values()], np.float64)
            row[f"{k}_mean"] = float(vals.mean())
            row[f"{k}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            folds = sorted({f for f, _ in runs})
            row[f"{k}_per_fold"] = [float(np.mean([r[k] for (f, _), r in runs.items()
                                                   if f == fold])) for fold in folds]
        if out["baseline"] and mode not in (baseline, "probe"):
            base = results[baseline]
            pairs = sorted(set(runs) & set(base))
            for k in keys:
                row[f"{k}_vs_{baseline}"] = significance.paired_analysis(
                    {p: runs[p][k] for p in pairs}, {p: base[p][k] for p in pairs})
            row["p_vs_classic"] = row[f"{keys[0]}_vs_{baseline}"]["p_wilcoxon"]
            row["n_pairs"] = len(pairs)
            family.append(row)
        out["systems"][mode] = row
    for row, adjusted in zip(family, significance.holm([r["p_vs_classic"] for r in family])):
        row["p_holm"] = adjusted
    out["holm_family"] = len(family)
    return out


def ci_text(t: dict) -> str:
    """``[low, high]`` in points of a paired analysis's interval (blank with one fold).

    >>> ci_text({"ci_low": -0.012, "ci_high": 0.034})
    '[-1.20, +3.40]'
    """
    if not (math.isfinite(t.get("ci_low", math.nan)) and math.isfinite(t.get("ci_high", math.nan))):
        return ""
    return f"[{100 * t['ci_low']:+.2f}, {100 * t['ci_high']:+.2f}]"


def format_markdown(summary: dict, title: str, folds: list) -> str:
    keys = summary["keys"]
    rows = []
    for mode, row in summary["systems"].items():
        cells = [mode, row["n_runs"]]
        cells += [f"{row[f'{k}_mean']:.4f} +- {row[f'{k}_sd']:.4f}" for k in keys]
        t = row.get(f"{keys[0]}_vs_{summary['baseline']}")
        if t:
            cells += [f"{100 * t['mean_diff']:+.2f} pt", ci_text(t), f"{t['wins']}/{t['losses']}",
                      f"{t['p_wilcoxon']:.4f}", f"{t['p_sign']:.4f}", f"{row['p_holm']:.4f}"]
        else:
            cells += ["", "", "", "", "", ""]
        rows.append(cells)
    per_fold = []
    for i, f in enumerate(folds):
        vals = [summary["systems"][m][f"{keys[0]}_per_fold"][i]
                if i < len(summary["systems"][m][f"{keys[0]}_per_fold"]) else math.nan
                for m in summary["systems"]]
        left_out = summary.get("auxiliary_excluded", {}).get(f"fold{f.index}")
        per_fold.append([f.index, ",".join(f.test)] + [f"{v:.4f}" for v in vals]
                        + ([", ".join(f"{m} {n}" for m, n in left_out.items())]
                           if left_out is not None else []))
    lines = [f"# {title}", "",
             f"{len(folds)} speaker-independent folds; test scores of the target modality "
             "alone, mean +- sd over the fold x seed runs. Against classic: paired over the "
             "folds (each system's mean over its seeds in a fold; the folds are the "
             f"independent units), the mean gain in {keys[0]} points with its 95 % t interval, "
             "folds won/lost, two-sided Wilcoxon and sign p, and the Wilcoxon p Holm-adjusted "
             f"over the {summary.get('holm_family', 0)} systems compared with classic here.", "",
             markdown_table(["system", "runs", *keys, "diff vs classic", "95 % CI",
                             "folds won/lost", "p (Wilcoxon)", "p (sign)", "p (Holm)"], rows)]
    if summary.get("vs_probe"):
        cs = [r["C"] for r in summary["probe"].values()]
        lines += ["", "Against the linear probe (`probe`: standardised logistic regression on "
                  "the same features and folds, fitted on each fold's training speakers, C "
                  "chosen by inner speaker folds among them; per fold C "
                  + ", ".join(f"{c:g}" for c in cs) + "): each system's mean over its seeds in "
                  "a fold minus the probe's score, tested over the folds.", "",
                  markdown_table(["system", f"diff vs probe ({keys[0]})", "95 % CI",
                                  "folds won/lost", "p (Wilcoxon)", "p (sign)"],
                                 [[m, f"{100 * t['mean_diff']:+.2f} pt", ci_text(t),
                                   f"{t['wins']}/{t['losses']}", f"{t['p_wilcoxon']:.4f}",
                                   f"{t['p_sign']:.4f}"]
                                  for m, t in summary["vs_probe"].items()])]
        warning = probe_warning(summary)
        if warning:
            lines += ["", warning]
    if summary.get("capacity"):
        grid = summary["capacity"]["grid"]
        chosen = summary["capacity"]["chosen"]
        lines += ["", f"Capacity chosen per fold and system by {grid['inner_folds']} inner "
                  "speaker folds over the fold's training speakers (dense L2 from "
                  f"{', '.join(f'{v:g}' for v in grid['dense_l2'])}; epochs from "
                  f"{', '.join(str(v) for v in grid['epochs'])}; the best mean inner dev "
                  f"{keys[0]}):", "",
                  markdown_table(["fold", *chosen],
                                 [[f.index] + [chosen[m][f"fold{f.index}"]["label"]
                                               for m in chosen] for f in folds])]
    lines += [
             "", f"Per fold ({keys[0]}, mean over seeds):", "",
             markdown_table(["fold", "test speakers", *summary["systems"]]
                            + (["auxiliary items left out"] if summary.get("auxiliary_excluded")
                               else []), per_fold)]
    return "\n".join(lines) + "\n"


PROBE_TOLERANCE = 0.005  # half a point of the headline score


def probe_warning(summary: dict):
    """One line when a system trails the linear probe by more than half a point over the
    folds (the probe is the first thing a reviewer would try), else ``None``.

    >>> probe_warning({"keys": ["f1_macro"], "capacity": None,
    ...                "vs_probe": {"classic": {"mean_diff": -0.0347}}})[:59]
    '**Below the probe**: classic -3.47 pt from the linear probe'
    """
    below = [(m, t["mean_diff"]) for m, t in (summary.get("vs_probe") or {}).items()
             if t["mean_diff"] < -PROBE_TOLERANCE]
    if not below:
        return None
    hint = ("capacity was already chosen on the training speakers (--capacity inner)"
            if summary.get("capacity") else
            "try --capacity inner (dense L2 and epochs chosen on the training speakers)")
    return ("**Below the probe**: " + ", ".join(f"{m} {100 * d:+.2f} pt" for m, d in below)
            + f" from the linear probe over the folds ({summary['keys'][0]}): with these "
            f"settings the neural model does not earn its cost on these features; {hint}, "
            "and report the probe beside it.")


def plot(summary: dict, folds: list, path: str) -> None:
    """Per-fold scores of each system and the paired differences against classic."""
    plt = figures.pyplot()
    key = summary["keys"][0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(folds))
    for mode, row in summary["systems"].items():
        ax1.plot(x, row[f"{key}_per_fold"], marker="o", label=f"{mode} ({row[f'{key}_mean']:.3f})")
    ax1.set_xticks(x, [",".join(f.test) if len(f.test) < 3 else str(f.index) for f in folds],
                   rotation=60, fontsize=7)
    ax1.set_xlabel("fold (test speakers)")
    ax1.set_ylabel(f"test {key}")
    ax1.legend(fontsize=8)
    diffs = {m: r for m, r in summary["systems"].items() if f"{key}_vs_{summary['baseline']}" in r}
    if diffs:
        data = [np.array(r["diffs_vs_classic"]) * 100 for r in diffs.values()]
        ax2.boxplot(data, tick_labels=list(diffs))
        ax2.axhline(0, color="grey", lw=0.8)
        ax2.set_ylabel(f"{key} - classic (points), per fold x seed")
    figures.save(fig, path)


# --------------------------------------------------------------------------
# running


def parse_system(name: str) -> tuple:
    """``"emobed"`` -> ``("emobed", None)``; ``"emobed+prototype"`` -> ``("emobed", "prototype")``.

    A system is one of the paper's modes, optionally with another
    crossmodal loss than the configured one.

    Example:
    >>> parse_system("triplet+prototype")
    ('triplet', 'prototype')
    """
    mode, _, loss = name.partition("+")
    if mode not in configs.MODES:
        raise configs.ConfigError(f"unknown system {name!r}: the mode must be one of {configs.MODES}")
    if loss and loss not in configs.CROSSMODAL_LOSSES:
        raise configs.ConfigError(f"unknown system {name!r}: the crossmodal loss after '+' must be one "
                            f"of {configs.CROSSMODAL_LOSSES}")
    return mode, loss or None


def system_config(base: configs.TrainConfig, system: str) -> configs.TrainConfig:
    """``base`` trained as ``system`` (see :func:`parse_system`)."""
    mode, loss = parse_system(system)
    lc = base.loss
    if loss:
        lc = dataclasses.replace(lc, crossmodal_loss=loss)
    if mode == "classic":  # never reads the auxiliary: a warm-up on it does not apply
        lc = dataclasses.replace(lc, aux_warmup_epochs=0)
    return dataclasses.replace(base, mode=mode, loss=lc)


def fold_config(base: configs.TrainConfig, system: str, fold: speakers.Fold, seed: int,
                out: str) -> configs.TrainConfig:
    """The configuration of one run: ``system`` on ``fold`` with ``seed``, in ``OUT/runs``."""
    data = dataclasses.replace(base.data, train_speakers=fold.train, dev_speakers=fold.dev,
                               test_speakers=fold.test)
    return dataclasses.replace(system_config(base, system), seed=seed, data=data,
                               out=os.path.join(out, "runs", system,
                                                f"fold{fold.index}-seed{seed}"))


def check_before_training(base: configs.TrainConfig, folds: list, modes, out: str) -> dict:
    """Checks every fold's data before any run trains; returns the auxiliary items each
    fold leaves out: ``{"fold<i>": {modality: items}}`` (empty without an auxiliary).

    Opens both corpora as the systems that read the auxiliary do (task,
    labels, speakers: a held-out target speaker missing from an auxiliary
    corpus that shares speakers is an error here, not after hours of
    training), and checks no run folder is or holds a data folder.
    """
    crossmodal = [m for m in modes if m != "classic"]
    probe = system_config(base, crossmodal[0] if crossmodal else modes[0])
    plain = dataclasses.replace(probe, data=dataclasses.replace(
        probe.data, train_speakers=(), dev_speakers=(), test_speakers=()))
    sources = experiment.resolve_sources(plain)
    experiment.check_out_is_not_data(out, sources)
    excluded = {}
    for fold in folds:
        cfg = fold_config(base, probe.mode if crossmodal else modes[0], fold, 0, out)
        speakers.speaker_fold_sources(cfg, sources)  # validates the fold (raises DataError)
        if len(sources) > 1:
            excluded[f"fold{fold.index}"] = speakers.auxiliary_exclusions(cfg, sources)
    return excluded


def probe_folds(base: configs.TrainConfig, folds: list, out: str, overwrite: bool = False,
                log=print) -> dict:
    """The linear probe (:mod:`emobed_tf.experiments.probe`) of every fold, in
    ``OUT/runs/probe/fold<i>``: ``{fold index: metrics}``."""
    import time

    from emobed_tf.experiments import probe

    done = {}
    for fold in folds:
        cfg = fold_config(base, "classic", fold, 0, out)
        cfg = dataclasses.replace(cfg, out=os.path.join(out, "runs", "probe", f"fold{fold.index}"))
        t0 = time.perf_counter()
        res = probe.run_probe(cfg, overwrite)
        done[fold.index] = res
        log(f"probe fold {fold.index}: C {res['probe']['C']:g} (inner speaker folds), test "
            f"f1_macro {res['test']['f1_macro']:.4f} ({time.perf_counter() - t0:.1f} s)")
    return done


def against_probe(results: dict, key: str) -> dict:
    """Each system against the probe over the folds
    (:func:`~emobed_tf.experiments.significance.paired_analysis`: the system's mean over its
    seeds in a fold minus the probe's score there; the probe has no seed)."""
    per_fold_probe = {f: r[key] for (f, _), r in results["probe"].items()}
    return {mode: significance.paired_analysis({k: r[key] for k, r in runs.items()},
                                               per_fold_probe)
            for mode, runs in results.items() if mode != "probe"}


def run_crossval(base: configs.TrainConfig, folds: list, modes, seeds, out: str,
                 overwrite: bool = False, log=print, jobs: int = 1,
                 with_probe: bool = True, capacity=None) -> dict:
    """Trains every mode x fold x seed (reusing finished runs; ``jobs`` side by side, see
    :func:`emobed_tf.experiments.runner.run_many`) and, for classification with
    ``with_probe``, fits the linear probe of every fold; returns the summary dict.
    ``capacity`` (a :class:`~emobed_tf.experiments.capacity.CapacityGrid`): every system's
    dense L2 and epochs are first chosen per fold by inner speaker folds over the fold's
    training speakers (:mod:`emobed_tf.experiments.capacity`)."""
    from emobed_tf.experiments import capacity as cap
    from emobed_tf.experiments import runner

    def train(cfgs, labels, describe=None):
        return runner.run_many(cfgs, overwrite, jobs, labels=labels, describe=describe, log=log)

    chosen = {}
    if capacity is not None:
        key = "f1_macro" if experiment.resolve_sources(system_config(base, "classic"))[
            base.target].manifest.task == "classification" else "ccc_mean"
        chosen = cap.select({(m, f.index): fold_config(base, m, f, 0, out)
                             for m in modes for f in folds}, folds, capacity, out, train, key)
    todo = [(m, f, s) for s in seeds for f in folds for m in modes]
    cfgs = [fold_config(base, m, f, s, out) for m, f, s in todo]
    if chosen:
        cfgs = [chosen[m, f.index][0].apply(c) for (m, f, _), c in zip(todo, cfgs)]
    metrics = train(cfgs, [f"{m} fold {f.index} seed {s}" for m, f, s in todo])
    first = metrics[0]
    keys = (["f1_macro", "uar", "accuracy"] if first["task"] == "classification"
            else [k for k in first["headline"]] + ["ccc_mean"])
    results = {m: {} for m in modes}
    for (mode, fold, seed), res in zip(todo, metrics):
        results[mode][(fold.index, seed)] = {k: res["test"][k] for k in keys}
    probes = {}
    if with_probe and first["task"] == "classification":
        probes = probe_folds(base, folds, out, overwrite, log)
        results["probe"] = {(f, s): {k: probes[f]["test"][k] for k in keys}
                            for f in probes for s in seeds}
    summary = summarise(results, keys)
    if probes:
        summary["vs_probe"] = against_probe(results, keys[0])
        summary["probe"] = {f"fold{f}": r["probe"] for f, r in probes.items()}
        summary["systems"]["probe"]["n_runs"] = len(probes)  # one per fold: it has no seed
    base_runs = results.get("classic")
    for mode, row in summary["systems"].items():
        if base_runs is not None and mode != "classic":
            pairs = sorted(set(results[mode]) & set(base_runs))
            row["diffs_vs_classic"] = [results[mode][p][keys[0]] - base_runs[p][keys[0]] for p in pairs]
    summary["runs"] = {m: {f"fold{f}-seed{s}": v for (f, s), v in r.items()}
                       for m, r in results.items()}
    if chosen:
        summary["capacity"] = {
            "grid": dataclasses.asdict(capacity),
            "chosen": {m: {f"fold{f}": {"label": c.label, "dense_l2": c.dense_l2,
                                        "epochs": c.epochs, "inner_dev": means}
                           for (m2, f), (c, means) in chosen.items() if m2 == m}
                       for m in modes}}
    summary["folds"] = [dataclasses.asdict(f) for f in folds]
    summary["seeds"] = list(seeds)
    summary["config"] = dataclasses.replace(base, out=out).to_json()
    return summary
