"""Which recipe could make the crossmodal gain larger? A screen on dev speakers only.

::

    pip install torch  # the screen's own small re-implementation runs on torch
    python -m benchmarks.dev_screen --work /work/devwork

A fast, independent re-implementation of the systems with dense branches
(f_A, f_V: one tanh layer of 120; f: 120 tanh + softmax; Adam 1e-3, batch
64 + 64 auxiliary, L2 1e-4, at most 50 epochs, early stopping with patience
10 on dev macro-F1) screens recipes that the package does not have, or has
only as options, on the data folders that ``benchmarks.dev_corpus``
extracted (``ravdess_speech``, ``faces``, ``ravdess_au`` under ``--work``).

The protocol never looks at test speakers: the same 8 speaker folds as the
study (fold i = speakers[i::8]), the next fold's speakers as dev, the rest
train; the auxiliary is restricted to the non-dev, non-test actors (AUs).
Each recipe's score is its **dev** macro-F1 (the early-stopping maximum)
averaged over 8 folds x 3 seeds, the held-out test speakers are never
predicted. A recipe with a dev gain near the +2 points sought would then
have been built into the package and run through ``python -m
emobed_tf.crossval`` on test; the largest dev gain was +1.0 point (joint
training after 10 epochs on the auxiliary alone, with the AUs; +0.1 with
the faces), so the package's defaults stay the paper's.

Writes ``benchmarks/results/dev_screen.json`` and ``.md``; resumable (one
line per recipe and setting in ``--work``/dev_screen.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import RESULTS, machine

SETTINGS = {"faces": "faces", "video_au": "ravdess_au"}
SEEDS = (0, 1, 2)
FOLDS = 8
# name -> (recipe, the classic it is compared with, what it tests)
RECIPES = {
    "classic": ({}, "classic", "audio only"),
    "joint": ({"alpha": 0.5}, "classic", "auxiliary loss, alpha .5"),
    "emobed": ({"alpha": 0.5, "beta": 0.5}, "classic", "the paper's system (alpha = beta = .5)"),
    "emobed, hinge on unit embeddings, crossmodal pairs only":
        ({"alpha": 0.5, "beta": 0.5, "form": "hinge", "margin": 0.3, "norm": 1, "xonly": 1},
         "classic", "which embedding the triplet sees"),
    "emobed, auxiliary batch 256": ({"alpha": 0.5, "beta": 0.5, "auxbs": 256}, "classic",
                                    "more auxiliary per step"),
    "emobed, alpha and beta decayed linearly to 0":
        ({"alpha": 0.5, "beta": 0.5, "sched": "linear"}, "classic", "schedule"),
    "joint, alpha decayed linearly to 0": ({"alpha": 0.5, "sched": "linear"}, "classic",
                                           "schedule"),
    "joint, 10 epochs on the auxiliary first": ({"alpha": 0.5, "pretrain": 10}, "classic",
                                                "warm-up on the auxiliary"),
    "f pretrained on the auxiliary (20 epochs), then frozen":
        ({"pretrain": 20, "freeze": 1}, "classic", "auxiliary encoder pretrained / frozen"),
    "crossmodal mixup in the shared space": ({"alpha": 0.5, "mix": 0.5}, "classic",
                                             "beyond the paper"),
    "classic, dropout .3": ({"drop": 0.3}, "classic, dropout .3", "regularisation"),
    "emobed, dropout .3": ({"drop": 0.3, "alpha": 0.5, "beta": 0.5}, "classic, dropout .3",
                           "regularisation"),
    "classic, per-speaker normalisation": ({"spknorm": 1}, "classic, per-speaker normalisation",
                                           "normalisation"),
    "joint, per-speaker normalisation": ({"spknorm": 1, "alpha": 0.5},
                                         "classic, per-speaker normalisation", "normalisation"),
    "emobed, per-speaker normalisation": ({"spknorm": 1, "alpha": 0.5, "beta": 0.5},
                                          "classic, per-speaker normalisation", "normalisation"),
    "classic, 4 training speakers": ({"ntrain": 4}, "classic, 4 training speakers",
                                     "small target"),
    "joint, 4 training speakers": ({"ntrain": 4, "alpha": 0.5}, "classic, 4 training speakers",
                                   "small target"),
    "emobed, 4 training speakers": ({"ntrain": 4, "alpha": 0.5, "beta": 0.5},
                                    "classic, 4 training speakers", "small target"),
}


def load(work: str, name: str):
    """(features [N, D], labels [N], speakers [N]) of a data folder (utterance-level records).

    Read once through the package's record parser in a TensorFlow process
    (TensorFlow and torch crash in one process here) and kept in ``work``.
    """
    path = os.path.join(work, f"dev_screen_{name}.npz")
    if not os.path.exists(path):
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        subprocess.run([sys.executable, "-m", "benchmarks.dev_screen", "--work", work,
                        "--dump", name], env=env, check=True)
    z = np.load(path)
    return z["x"], z["y"], z["s"]


def dump(work: str, name: str) -> None:
    """Writes ``work``/dev_screen_<name>.npz from the data folder ``work``/<name>."""
    import tensorflow as tf

    from emobed_tf.data import source
    from emobed_tf.records import parse

    src = source.Source.open(os.path.join(work, name))
    (modality,) = src.manifest.modalities
    paths = [os.path.join(src.data_dir, sh.path) for sh in source.all_shards(src.manifest, modality)]
    ds = tf.data.TFRecordDataset(paths).batch(4096).map(
        lambda r: parse.parse_batch(r, "records", src.expected(modality), label_dims=False))
    xs, ys, ss = [], [], []
    for b in ds.as_numpy_iterator():
        if b["features"].shape[1] != 1:
            raise SystemExit(f"{src.data_dir}: the screen takes one vector per item")
        xs.append(b["features"][:, 0])
        ys.append(b["label_class"])
        ss.append(b["speaker"].astype(str))
    np.savez(os.path.join(work, f"dev_screen_{name}.npz"), x=np.concatenate(xs).astype(np.float32),
             y=np.concatenate(ys), s=np.concatenate(ss))


def speaker_normalised(x, speakers):
    x = x.copy()
    for s in set(speakers):
        rows = speakers == s
        x[rows] = (x[rows] - x[rows].mean(0)) / (x[rows].std(0) + 1e-6)
    return x


def folds(speakers, k=FOLDS):
    s = sorted(set(speakers))
    out = []
    for i in range(k):
        test, dev = s[i::k], s[(i + 1) % k::k]
        out.append(([x for x in s if x not in test and x not in dev], dev, test))
    return out


def batch_hard_torch(labels, emb, form="paper", margin=0.0, unit=False, crossmodal_from=0):
    """Mean over anchors of the batch-hard triplet term (torch; the screen's fast form).

    ``crossmodal_from`` > 0: rows before it are one modality, the rest the
    other, and only pairs across the two count.
    """
    import torch

    if unit:
        emb = emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-6)
    sq = emb.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * emb @ emb.T).clamp(min=1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    allowed = ~torch.eye(len(labels), dtype=torch.bool)
    if crossmodal_from:
        mod = torch.arange(len(labels)) < crossmodal_from
        allowed = allowed & (mod[:, None] != mod[None, :])
    pos, neg = (same & allowed).float(), (~same & allowed).float()
    dp = (d * pos).max(1).values
    dn = (d + 1e9 * (1 - neg)).min(1).values
    ok = ((pos.sum(1) > 0) & (neg.sum(1) > 0)).float()
    term = dp - dn if form == "paper" else torch.relu(dp - dn + margin)
    return (term * ok).sum() / ok.sum().clamp(min=1)


def run_one(cfg, audio, video, fold, seed):
    """Dev macro-F1 (the early-stopping maximum) of one recipe, fold and seed."""
    import torch
    from sklearn.metrics import f1_score
    from torch import nn

    torch.set_num_threads(1)
    (xa, ya, sa), (xv, yv, sv) = audio, video
    train, dev, test = fold
    if cfg.get("ntrain"):
        train = list(np.random.default_rng(1000 + seed).permutation(train)[: cfg["ntrain"]])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ia, idev = np.isin(sa, train), np.isin(sa, dev)
    iv = ~np.isin(sv, list(dev) + list(test))  # the auxiliary never holds a dev/test actor
    a = torch.tensor((xa - xa[ia].mean(0)) / (xa[ia].std(0) + 1e-6))
    v = torch.tensor((xv - xv[iv].mean(0)) / (xv[iv].std(0) + 1e-6))
    ya_t, yv_t = torch.tensor(ya, dtype=torch.long), torch.tensor(yv, dtype=torch.long)
    e, k = 120, int(ya.max()) + 1
    fa = nn.Sequential(nn.Dropout(cfg.get("drop", 0.0)), nn.Linear(a.shape[1], e), nn.Tanh())
    f = nn.Sequential(nn.Linear(e, e), nn.Tanh(), nn.Linear(e, k))
    fv = nn.Sequential(nn.Linear(v.shape[1], e), nn.Tanh())  # last: classic's init is shared
    params = list(fa.parameters()) + list(f.parameters()) + list(fv.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    ce = nn.CrossEntropyLoss()
    alpha, beta, pre = cfg.get("alpha", 0.0), cfg.get("beta", 0.0), cfg.get("pretrain", 0)
    tri, vi, dvi = np.where(ia)[0], np.where(iv)[0], np.where(idev)[0]
    best, bad, epochs = -1.0, 0, 50

    def triplet(labels, emb, n_a):
        # batch-hard triplet as emobed_tf.model.losses.batch_hard_triplet_loss (form paper: d+ - d-;
        # hinge: max(0, d+ - d- + margin)), optionally on unit embeddings and over crossmodal
        # pairs only; tests/test_dev_screen.py checks it against the package's.
        return batch_hard_torch(labels, emb, cfg.get("form", "paper"), cfg.get("margin", 0.0),
                                bool(cfg.get("norm")), n_a if cfg.get("xonly") else 0)

    for ep in range(epochs + pre):
        for m in (fa, f, fv):
            m.train()
        if ep < pre:
            w_t, w_a, w_b = 0.0, 1.0, 0.0
        else:
            decay = max(0.0, 1 - (ep - pre) / (epochs - 1)) if cfg.get("sched") else 1.0
            w_t, w_a, w_b = 1.0, alpha * decay, beta * decay
        perm = rng.permutation(tri)
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            ea = fa(a[b])
            loss = w_t * ce(f(ea), ya_t[b])
            if w_a > 0 or w_b > 0 or cfg.get("mix"):
                bv = rng.choice(vi, cfg.get("auxbs", len(b)))
                ev = fv(v[bv])
                if w_a > 0:
                    loss = loss + w_a * ce(f(ev), yv_t[bv])
                if w_b > 0:
                    loss = loss + w_b * triplet(torch.cat([ya_t[b], yv_t[bv]]),
                                                torch.cat([ea, ev]), len(b))
                if cfg.get("mix") and ep >= pre:
                    lam = torch.tensor(rng.beta(0.4, 0.4, len(b)), dtype=torch.float32)
                    logp = torch.log_softmax(f(lam[:, None] * ea + (1 - lam[:, None]) * ev), 1)
                    nll = -(lam * logp.gather(1, ya_t[b][:, None])[:, 0]
                            + (1 - lam) * logp.gather(1, yv_t[bv][:, None])[:, 0])
                    loss = loss + cfg["mix"] * nll.mean()
            l2 = sum((p ** 2).sum() for m in (fa, f, fv) for n, p in m.named_parameters()
                     if "weight" in n)
            loss = loss + 1e-4 * l2
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ep == pre - 1 and cfg.get("freeze"):
            for p in f.parameters():
                p.requires_grad = False
        if ep < pre:
            continue
        for m in (fa, f):
            m.eval()
        with torch.no_grad():
            pred = f(fa(a[dvi])).argmax(1).numpy()
        score = f1_score(ya[dvi], pred, average="macro")
        if score > best:
            best, bad = score, 0
        else:
            bad += 1
            if bad >= 10:
                break
    return float(best)


def screen(work: str, log_path: str) -> list:
    done = {}
    if os.path.exists(log_path):
        for line in open(log_path):
            r = json.loads(line)
            done[(r["recipe"], r["setting"])] = r
    audio = load(work, "ravdess_speech")
    sn_audio = (speaker_normalised(audio[0], audio[2]),) + audio[1:]
    for name, (cfg, _, _) in RECIPES.items():
        for setting, folder in SETTINGS.items():
            if (name, setting) in done:
                continue
            video = load(work, folder)
            if cfg.get("spknorm") and setting == "video_au":
                video = (speaker_normalised(video[0], video[2]),) + video[1:]
            t0 = time.time()
            scores = [run_one(cfg, sn_audio if cfg.get("spknorm") else audio, video, fold, s)
                      for fold in folds(audio[2]) for s in SEEDS]
            r = {"recipe": name, "setting": setting, "dev_f1": scores,
                 "seconds": round(time.time() - t0, 1)}
            with open(log_path, "a") as fh:
                fh.write(json.dumps(r) + "\n")
            done[(name, setting)] = r
            print(f"{name} [{setting}]: dev macro-F1 {np.mean(scores):.4f} "
                  f"({r['seconds']:.0f} s)", flush=True)
    return [done[(n, s)] for n in RECIPES for s in SETTINGS]


def report(rows: list) -> dict:
    from scipy import stats

    by = {(r["recipe"], r["setting"]): np.asarray(r["dev_f1"]) for r in rows}
    out = {"protocol": __doc__.split("\n\n")[4].strip(), "machine": machine(),
           "folds": FOLDS, "seeds": list(SEEDS), "settings": {}}
    lines = ["# Screen of recipes on dev speakers (test speakers never predicted)", "",
             f"Dense re-implementation, {FOLDS} speaker folds x {len(SEEDS)} seeds, dev macro-F1 "
             "(the early-stopping maximum) of the speech model; diff and paired Wilcoxon p "
             "against the classic of the same condition. Made by `python -m "
             "benchmarks.dev_screen`.", ""]
    for setting in SETTINGS:
        lines += [f"## {setting}", "", "| recipe | what it tests | dev macro-F1 | diff | p |",
                  "|---|---|---|---|---|"]
        out["settings"][setting] = {}
        for name, (_, base, what) in RECIPES.items():
            x, c = by[(name, setting)], by[(base, setting)]
            diff = 100 * float(np.mean(x - c))
            p = None if name == base else float(stats.wilcoxon(x, c).pvalue)
            out["settings"][setting][name] = {"dev_f1_mean": float(x.mean()),
                                              "diff_vs_classic_pt": diff, "p_vs_classic": p,
                                              "baseline": base, "n_pairs": len(x)}
            lines.append(f"| {name} | {what} | {x.mean():.4f} | "
                         f"{'' if p is None else f'{diff:+.2f} pt'} | "
                         f"{'' if p is None else f'{p:.3f}'} |")
        lines.append("")
    with open(os.path.join(RESULTS, "dev_screen.json"), "w") as fh:
        json.dump(out, fh, indent=1)
    with open(os.path.join(RESULTS, "dev_screen.md"), "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="the dev_corpus study's work folder")
    p.add_argument("--dump", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dump:
        dump(args.work, args.dump)
        return 0
    rows = screen(args.work, os.path.join(args.work, "dev_screen.jsonl"))
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
