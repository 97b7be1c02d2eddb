"""Speaker-independent cross-validation of the paper's systems, without re-extraction.

::

    python -m emobed_tf.crossval --dataset custom --audio-dir data/ravdess \\
        --video-dir data/faces --target audio --folds speaker:8 \\
        --modes classic,emobed --seeds 0,1,2 --out runs/cv

Folds are assigned at read time from the speaker ids in the records (the
data layer filters by speaker; no shards are written): ``--folds loso``
holds out one speaker per fold, ``speaker:K`` splits the sorted speakers
into K folds (fold i = speakers[i::K]). Inside the remaining speakers a dev
group (the next fold's speakers; for LOSO the next ``--n-dev-speakers``
speakers) serves early stopping; the rest train. The auxiliary modality
trains on everything except the target's dev and test speakers, so a
corpus that shares speakers with the target (audio-visual recordings)
never brings a held-out speaker's face into training.

Every system x fold x seed is trained into ``OUT/runs/<mode>/fold<i>-seed<s>``
(finished runs are reused, interrupted ones resume), then ``OUT/crossval.md``,
``OUT/crossval.json`` and ``OUT/crossval.png`` report per fold and mean +- sd
macro-F1, UAR and accuracy (classification; CCC for regression) and paired
tests of each system against ``classic`` over the fold x seed pairs
(Wilcoxon signed-rank and sign test, two-sided, scipy). Ctrl-C stops with
one line saying how many runs finished (exit code 130); rerunning the same
command resumes. ``--backend jax|torch`` trains every run on that backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time

from emobed_tf import cli  # first: keeps framework start-up logs quiet
import numpy as np

from emobed_tf import configs as C
from emobed_tf import data as D
from emobed_tf import experiment as E
from emobed_tf import figures
from emobed_tf.errors import EmobedError
from emobed_tf.io import markdown_table, write_json_and_markdown


@dataclasses.dataclass(frozen=True)
class Fold:
    """One cross-validation fold: speaker ids per partition."""

    index: int
    train: tuple
    dev: tuple
    test: tuple


def make_folds(speakers, scheme: str = "speaker:8", dev_speakers: int = 0,
               train_speakers: int = 0, seed: int = 0) -> list:
    """Speaker-independent folds.

    Args:
        speakers: the target corpus' speaker ids.
        scheme: ``"loso"`` (one test speaker per fold) or ``"speaker:K"``
            (K folds, fold i tests ``sorted(speakers)[i::K]``).
        dev_speakers: dev speakers per fold; 0 = the next fold's test
            speakers (``speaker:K``) or ``max(1, round(n / 10))`` (LOSO).
        train_speakers: keep only this many training speakers (a random,
            fold-specific subset; 0 = all), for learning curves.
        seed: seed of that subset.

    Returns:
        ``[Fold]``; every speaker is tested exactly once, and no fold's
        test or dev speaker trains in it.

    Example:
    >>> folds = make_folds(["a", "b", "c", "d", "e", "f"], "speaker:3")
    >>> [f.test for f in folds]
    [('a', 'd'), ('b', 'e'), ('c', 'f')]
    >>> folds[2]
    Fold(index=2, train=('b', 'e'), dev=('a', 'd'), test=('c', 'f'))
    >>> make_folds(["a", "b", "c", "d"], "loso")[3]
    Fold(index=3, train=('b', 'c'), dev=('a',), test=('d',))
    """
    spk = sorted(set(speakers))
    n = len(spk)
    if scheme == "loso":
        k = n
    elif scheme.startswith("speaker:"):
        try:
            k = int(scheme.split(":", 1)[1])
        except ValueError:
            k = 0
    else:
        raise C.ConfigError(f"--folds must be loso or speaker:K, got {scheme!r}")
    n_dev = dev_speakers or (max(1, round(n / 10)) if scheme == "loso" else 0)
    # a fold needs test speakers, dev speakers and at least one training speaker: with the
    # next fold as dev that is 3 groups; with n_dev dev speakers, a test group small enough
    # to leave room for them and one more
    fits = [j for j in range(2, n + 1)
            if (j >= 3 if not n_dev else -(-n // j) + n_dev < n)]
    if k not in fits:
        dev_what = f"{n_dev} dev speakers" if n_dev else "the next fold as dev"
        need = f"K must be {fits[0]}..{n}" if fits else "there are too few speakers"
        raise C.ConfigError(f"--folds {scheme}: with {n} speakers, {dev_what} and at least "
                            f"one training speaker per fold, {need}")
    groups = [tuple(spk[i::k]) for i in range(k)]
    folds = []
    for i in range(k):
        test = groups[i]
        if n_dev:  # the speakers that follow the test speakers, cyclically
            start = spk.index(test[-1]) + 1
            dev = [s for s in spk[start:] + spk[:start] if s not in test][:n_dev]
        else:
            dev = groups[(i + 1) % k]
        train = [s for s in spk if s not in test and s not in dev]
        if train_speakers:
            if train_speakers > len(train):
                raise C.ConfigError(f"--n-train-speakers {train_speakers}: fold {i} has only "
                                    f"{len(train)} training speakers")
            rng = np.random.default_rng(seed * 1000 + i)
            train = sorted(rng.choice(train, train_speakers, replace=False).tolist())
        if not train:
            raise C.ConfigError(f"fold {i} has no training speaker left")
        folds.append(Fold(i, tuple(train), tuple(sorted(dev)), tuple(sorted(test))))
    return folds


# --------------------------------------------------------------------------
# statistics


def paired_tests(diffs) -> dict:
    """Two-sided Wilcoxon signed-rank and sign tests of paired differences.

    Example:
    >>> r = paired_tests([0.02, 0.01, 0.03, -0.01, 0.02, 0.04])
    >>> r["wins"], r["losses"], round(r["p_sign"], 4)
    (5, 1, 0.2188)
    """
    from scipy.stats import binomtest, wilcoxon

    d = np.asarray(diffs, np.float64)
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    out = {"n_pairs": int(d.size), "mean_diff": float(d.mean()) if d.size else math.nan,
           "wins": wins, "losses": losses, "ties": int(d.size - wins - losses)}
    if wins + losses == 0:
        out.update(p_wilcoxon=1.0, p_sign=1.0)
        return out
    out["p_wilcoxon"] = float(wilcoxon(d, zero_method="wilcox").pvalue) if np.any(d) else 1.0
    out["p_sign"] = float(binomtest(wins, wins + losses, 0.5).pvalue)
    return out


def summarise(results: dict, keys, baseline: str = "classic") -> dict:
    """Per system: per-fold means, mean +- sd over fold x seed runs, paired tests.

    ``results``: ``{mode: {(fold, seed): {key: test score}}}``.
    """
    out = {"keys": list(keys), "baseline": baseline if baseline in results else None,
           "systems": {}}
    for mode, runs in results.items():
        row = {"n_runs": len(runs)}
        for k in keys:
            vals = np.array([r[k] for r in runs.values()], np.float64)
            row[f"{k}_mean"] = float(vals.mean())
            row[f"{k}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            folds = sorted({f for f, _ in runs})
            row[f"{k}_per_fold"] = [float(np.mean([r[k] for (f, _), r in runs.items()
                                                   if f == fold])) for fold in folds]
        if out["baseline"] and mode != baseline:
            base = results[baseline]
            pairs = sorted(set(runs) & set(base))
            for k in keys:
                t = paired_tests([runs[p][k] - base[p][k] for p in pairs])
                row[f"{k}_vs_{baseline}"] = t
            row["p_vs_classic"] = row[f"{keys[0]}_vs_{baseline}"]["p_wilcoxon"]
            row["n_pairs"] = len(pairs)
        out["systems"][mode] = row
    return out


def format_markdown(summary: dict, title: str, folds: list) -> str:
    keys = summary["keys"]
    rows = []
    for mode, row in summary["systems"].items():
        cells = [mode, row["n_runs"]]
        cells += [f"{row[f'{k}_mean']:.4f} +- {row[f'{k}_sd']:.4f}" for k in keys]
        t = row.get(f"{keys[0]}_vs_{summary['baseline']}")
        if t:
            cells += [f"{100 * t['mean_diff']:+.2f} pt", f"{t['wins']}/{t['losses']}",
                      f"{t['p_wilcoxon']:.4f}", f"{t['p_sign']:.4f}"]
        else:
            cells += ["", "", "", ""]
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
             "alone, mean +- sd over the fold x seed runs.", "",
             markdown_table(["system", "runs", *keys, "diff vs classic", "wins/losses",
                             "p (Wilcoxon)", "p (sign)"], rows),
             "", f"Per fold ({keys[0]}, mean over seeds):", "",
             markdown_table(["fold", "test speakers", *summary["systems"]]
                            + (["auxiliary items left out"] if summary.get("auxiliary_excluded")
                               else []), per_fold)]
    return "\n".join(lines) + "\n"


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
    if mode not in C.MODES:
        raise C.ConfigError(f"unknown system {name!r}: the mode must be one of {C.MODES}")
    if loss and loss not in C.CROSSMODAL_LOSSES:
        raise C.ConfigError(f"unknown system {name!r}: the crossmodal loss after '+' must be one "
                            f"of {C.CROSSMODAL_LOSSES}")
    return mode, loss or None


def system_config(base: C.TrainConfig, system: str) -> C.TrainConfig:
    """``base`` trained as ``system`` (see :func:`parse_system`)."""
    mode, loss = parse_system(system)
    lc = base.loss
    if loss:
        lc = dataclasses.replace(lc, crossmodal_loss=loss)
    if mode == "classic":  # never reads the auxiliary: a warm-up on it does not apply
        lc = dataclasses.replace(lc, aux_warmup_epochs=0)
    return dataclasses.replace(base, mode=mode, loss=lc)


def fold_config(base: C.TrainConfig, system: str, fold: Fold, seed: int,
                out: str) -> C.TrainConfig:
    """The configuration of one run: ``system`` on ``fold`` with ``seed``, in ``OUT/runs``."""
    data = dataclasses.replace(base.data, train_speakers=fold.train, dev_speakers=fold.dev,
                               test_speakers=fold.test)
    return dataclasses.replace(system_config(base, system), seed=seed, data=data,
                               out=os.path.join(out, "runs", system,
                                                f"fold{fold.index}-seed{seed}"))


def check_before_training(base: C.TrainConfig, folds: list, modes, out: str) -> dict:
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
    sources = E.resolve_sources(plain)
    E.check_out_is_not_data(out, sources)
    excluded = {}
    for fold in folds:
        cfg = fold_config(base, probe.mode if crossmodal else modes[0], fold, 0, out)
        E.speaker_fold_sources(cfg, sources)  # validates the fold (raises DataError)
        if len(sources) > 1:
            excluded[f"fold{fold.index}"] = E.auxiliary_exclusions(cfg, sources)
    return excluded


def run_crossval(base: C.TrainConfig, folds: list, modes, seeds, out: str,
                 overwrite: bool = False, log=print) -> dict:
    """Trains every mode x fold x seed (reusing finished runs); returns the summary dict."""
    keys = None
    results = {m: {} for m in modes}
    todo = [(m, f, s) for s in seeds for f in folds for m in modes]
    t0, trained = time.time(), 0
    for i, (mode, fold, seed) in enumerate(todo, 1):
        cfg = fold_config(base, mode, fold, seed, out)
        t1 = time.time()
        res, reused = E.run_or_reuse(cfg, overwrite)
        if not reused:
            trained += 1
        if keys is None:
            keys = (["f1_macro", "uar", "accuracy"] if res["task"] == "classification"
                    else [k for k in res["headline"]] + ["ccc_mean"])
        results[mode][(fold.index, seed)] = {k: res["test"][k] for k in keys}
        left = len(todo) - i
        rate = (time.time() - t0) / trained if trained else 0.0
        eta = f"ETA {left * rate / 60:.1f} min" if trained else "ETA -"
        log(f"[{i}/{len(todo)}] {mode} fold {fold.index} seed {seed}: test {keys[0]} "
            f"{res['test'][keys[0]]:.4f} ({'reused' if reused else f'{time.time() - t1:.0f} s'})"
            f" {eta}")
    summary = summarise(results, keys)
    base_runs = results.get("classic")
    for mode, row in summary["systems"].items():
        if base_runs is not None and mode != "classic":
            pairs = sorted(set(results[mode]) & set(base_runs))
            row["diffs_vs_classic"] = [results[mode][p][keys[0]] - base_runs[p][keys[0]] for p in pairs]
    summary["runs"] = {m: {f"fold{f}-seed{s}": v for (f, s), v in r.items()}
                       for m, r in results.items()}
    summary["folds"] = [dataclasses.asdict(f) for f in folds]
    summary["seeds"] = list(seeds)
    summary["config"] = dataclasses.replace(base, out=out).to_json()
    return summary


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.crossval", description=__doc__,
        usage="python -m emobed_tf.crossval --dataset NAME --out DIR [--folds loso|speaker:K] "
              "[options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p, exclude=("train_speakers", "dev_speakers", "test_speakers"))
    p.add_argument("--modes", default="classic,emobed",
                   help="comma-separated systems: " + ", ".join(C.MODES) + ", each optionally "
                        "with another crossmodal loss, e.g. emobed+prototype")
    p.add_argument("--folds", default="speaker:8", help="loso or speaker:K")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--n-dev-speakers", type=int, default=0,
                   help="dev speakers per fold (default: the next fold's; LOSO: n/10)")
    p.add_argument("--n-train-speakers", type=int, default=0,
                   help="train on only this many of each fold's training speakers "
                        "(learning curves; default all)")
    p.add_argument("--out", required=True, help="folder for the runs and the report")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    runs = []  # the run folders, once the folds are known (for the line after Ctrl-C)

    def work():
        try:
            for m in modes:
                parse_system(m)
            seeds = [int(s) for s in args.seeds.split(",") if s]
            repeated = sorted({s for s in seeds if seeds.count(s) > 1})
            if repeated or not seeds:
                raise C.ConfigError(f"--seeds {args.seeds}: " + (
                    f"seed {repeated[0]} is given twice (the paired tests need one run per "
                    "fold and seed)" if repeated else "give at least one seed"))
            base = cli.config_from_args(  # as a system that reads the auxiliary when one does
                args, args.out, parse_system(next((m for m in modes if not m.startswith(
                    "classic")), modes[0]))[0])
            base = dataclasses.replace(base, verbose=args.verbose or 0)  # one line per run
            src = E.resolve_sources(system_config(base, "classic"))[base.target]
            stats = D.cached_speaker_statistics(src, base.target)
            E.require_speaker_ids(src, base.target, stats)
            speakers = sorted(stats)
            folds = make_folds(speakers, args.folds, args.n_dev_speakers,
                               args.n_train_speakers)
            excluded = check_before_training(base, folds, modes, args.out)
            runs[:] = [fold_config(base, m, f, s, args.out).out
                       for s in seeds for f in folds for m in modes]
            print(f"{len(speakers)} {base.target} speakers, {len(folds)} folds x {len(seeds)} "
                  f"seeds x {len(modes)} systems = {len(runs)} runs -> {args.out}", flush=True)
            summary = run_crossval(base, folds, modes, seeds, args.out, args.overwrite,
                                   log=lambda s: print(s, flush=True))
        except EmobedError as err:
            return cli.fail(err)
        summary["auxiliary_excluded"] = excluded
        title = f"{base.dataset}: target {base.target}, {args.folds}"
        md = format_markdown(summary, title, folds)
        write_json_and_markdown(args.out, "crossval", summary, md)
        plot(summary, folds, os.path.join(args.out, "crossval.png"))
        print(md)
        return 0

    def progress():
        where = os.path.join(args.out, "runs")
        if not runs:
            return f"no run had started ({where}); rerun the same command to start"
        return (f"{cli.finished_runs(runs)} of {len(runs)} runs finished ({where}); rerun the "
                "same command to resume")

    return cli.run_main(args, work, progress)


if __name__ == "__main__":
    sys.exit(main())
