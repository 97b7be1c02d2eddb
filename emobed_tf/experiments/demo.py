"""Built-in demo corpora. They are SIMULATIONS, not recordings.

``demo`` is shaped like OMG-Emotion (7 classes, one eGeMAPS-sized 88-d
audio vector and one VGG-Face-fc7-sized 4096-d video vector per
utterance); ``demo-recola`` like RECOLA (per-frame arousal/valence at
40 ms, 88-d audio and 168-d "appearance" video sequences).

How they are simulated: a latent emotion drives both modalities. Each
modality observes the latent through its own random projection, with its
own gains (audio sees arousal-like latent directions well and
valence-like ones poorly, video the opposite), plus speaker/subject
offsets (nuisance) and noise. Audio and video items are drawn
independently: they are unpaired, as EmoBed allows. The target modality
has fewer (and noisier) labelled training items than the auxiliary one,
the situation EmoBed is meant for. In ``demo-recola`` the gold standard
lags the latent by 2.4 s, like a human annotator's reaction delay.

Everything is generated deterministically from a seed through the same
``DatasetWriter`` as real corpora, on first use, into a cache folder
(``$EMOBED_TF_CACHE`` or ``~/.cache/emobed_tf``).
"""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
from scipy.ndimage import gaussian_filter1d

from emobed_tf.records import manifest, schema
from emobed_tf.configs import EGEMAPS_DIM, OMG_CLASSES, VGGFACE_FC7_DIM
from emobed_tf.records.schema import Item
from emobed_tf.records.writer import DatasetWriter

DEMO_VERSION = 3
# (arousal, valence) of each class on the circumplex, used as part of its latent prototype
_CIRCUMPLEX = np.array([[0.8, -0.6], [0.2, -0.7], [0.7, -0.5], [0.5, 0.8], [0.0, 0.0],
                        [-0.6, -0.5], [0.8, 0.4]])


def cache_dir() -> str:
    return os.environ.get("EMOBED_TF_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                          "emobed_tf"))


def _projection(rng, out_dim, latent_dim, gains):
    w = rng.normal(size=(out_dim, latent_dim)) / np.sqrt(latent_dim)
    return w * np.asarray(gains)[None, :]


def write_demo_omg(out_dir: str, seed: int = 0, sizes=None, overwrite: bool = False) -> manifest.Manifest:
    """Writes the simulated OMG-shaped corpus to ``out_dir``.

    The situation EmoBed addresses: a **small target corpus** (audio: 16
    speakers x 30 utterances) and a **larger auxiliary corpus of other
    people** (video: 60 subjects x 40 clips), unpaired, expressing the same
    7 emotions. ``sizes``: ``{"audio": (speakers, items per speaker),
    "video": (...)}``. Splits are by speaker (audio 8 / 4 / 4 speakers for
    train / dev / test, video 48 / 6 / 6); ``emobed_tf.crossval`` reassigns
    them by speaker folds.

    Generative story, the same for both modalities except where stated: an
    utterance's emotion class c gives a latent emotion z = prototype_c +
    N(0, 0.55^2) in an 8-d space (the first two dimensions are the
    circumplex's arousal and valence); a modality observes z through its own
    random linear map with its own gains per latent direction (audio:
    arousal-like directions strong, valence-like ones weak; video the other
    way round), plus a per-speaker offset, per-speaker class preferences
    (a shortcut that fails on unseen speakers) and noise; video is a sparse
    non-negative code like VGG-Face fc7. Nothing in it depends on which
    training method is used: both modalities carry their own, partial view
    of the same emotion space, which is the premise of crossmodal training,
    and neither sees the other's items.
    """
    rng = np.random.default_rng(seed)
    sizes = sizes or {"audio": (16, 30), "video": (60, 40)}
    split_of = {"audio": (8, 4, 4), "video": (48, 6, 6)}
    latent_dim = 8
    k = len(OMG_CLASSES)
    # Class prototypes: circumplex position in the first two latent dims,
    # random directions in the others.
    protos = np.concatenate([_CIRCUMPLEX * 1.2, rng.normal(scale=0.7, size=(k, latent_dim - 2))], 1)
    gains = {"audio": [1.0, 0.5, 0.8, 0.8, 0.6, 0.6, 0.7, 0.5],
             "video": [0.6, 1.0, 0.6, 0.6, 0.8, 0.8, 0.6, 0.8]}
    dims = {"audio": EGEMAPS_DIM, "video": VGGFACE_FC7_DIM}
    proj = {m: _projection(rng, dims[m], latent_dim, gains[m]) for m in dims}
    # video: a sparse, non-negative ReLU code like fc7; only a subset of units responds
    active = rng.random(dims["video"]) < 0.25
    noise = {"audio": 0.9, "video": 0.7}
    nuisance = {"audio": 1.0, "video": 0.5}  # speaker / subject offsets
    class_prior = np.array([0.10, 0.05, 0.05, 0.25, 0.30, 0.15, 0.10])
    with DatasetWriter(out_dir, "demo", "classification", OMG_CLASSES, dims,
                       {"audio": "simulated-eGeMAPS", "video": "simulated-VGGFace-fc7"},
                       dim_names=("arousal", "valence"), overwrite=overwrite,
                       extra={"simulated": True, "demo_version": DEMO_VERSION, "seed": seed}) as w:
        for mod in ("audio", "video"):
            n_spk, per_spk = sizes[mod]
            n_train, n_dev = (round(n_spk * f / sum(split_of[mod])) for f in split_of[mod][:2])
            for s_i in range(n_spk):
                split = "train" if s_i < n_train else "dev" if s_i < n_train + n_dev else "test"
                spk = f"{mod[0]}{s_i:02d}"
                offset = rng.normal(scale=nuisance[mod], size=dims[mod])
                prior = rng.dirichlet(class_prior * 7 * 0.6)
                for i in range(per_spk):
                    c = int(rng.choice(k, p=prior))
                    z = protos[c] + rng.normal(scale=0.55, size=latent_dim)
                    x = proj[mod] @ z + offset + rng.normal(scale=noise[mod], size=dims[mod])
                    if mod == "video":
                        x = np.maximum(x, 0.0) * active
                    av = np.clip(z[:2] / 1.5, -1, 1)[None, :]
                    w.add(Item(mod, x[None, :].astype(np.float32), label_class=c,
                               label_dims=av, corpus="demo", speaker=spk,
                               recording=f"{spk}-{i:03d}", split=split))
    return w.manifest


def _smooth_noise(rng, n, sigma, scale=1.0):
    x = gaussian_filter1d(rng.normal(size=n), sigma, mode="reflect")
    return scale * x / (x.std() + 1e-9)


def write_demo_recola(out_dir: str, seed: int = 0, frames: int = 1500, recordings=None,
                      overwrite: bool = False) -> manifest.Manifest:
    """Writes the simulated RECOLA-shaped corpus (arousal, valence per 40 ms frame).

    ``recordings``: recordings per (modality, split); default audio 4/3/3 and
    video 8/3/3 of ``frames`` frames each.
    """
    rng = np.random.default_rng(seed + 1000)
    recordings = recordings or {("audio", "train"): 4, ("audio", "dev"): 3, ("audio", "test"): 3,
                                ("video", "train"): 8, ("video", "dev"): 3, ("video", "test"): 3}
    dims = {"audio": EGEMAPS_DIM, "video": 168}
    delay = 60  # 2.4 s at 40 ms: the annotators lag the latent emotion
    latent_dim = 4  # arousal, valence, two nuisance processes
    gains = {"audio": [1.0, 0.3, 0.7, 0.0], "video": [0.35, 1.0, 0.0, 0.7]}
    proj = {m: _projection(rng, dims[m], latent_dim, gains[m]) for m in dims}
    with DatasetWriter(out_dir, "demo-recola", "regression", ("arousal", "valence"), dims,
                       {"audio": "simulated-eGeMAPS", "video": "simulated-appearance"},
                       frame_step_s=0.04, overwrite=overwrite,
                       extra={"simulated": True, "demo_version": DEMO_VERSION, "seed": seed}) as w:
        for (mod, split), n in recordings.items():
            for r in range(n):
                total = frames + delay
                arousal = np.tanh(_smooth_noise(rng, total, 40, 0.6) + rng.normal(scale=0.2))
                valence = np.tanh(_smooth_noise(rng, total, 60, 0.5) + rng.normal(scale=0.2))
                nuis = [_smooth_noise(rng, total, 25), _smooth_noise(rng, total, 80)]
                latent = np.stack([arousal, valence] + nuis, 1)
                # The emotion at frame t is latent[t + delay]: the features see
                # it at once, the annotators report it `delay` frames later.
                z = latent[delay:delay + frames]
                offset = rng.normal(scale=0.5, size=dims[mod])
                x = z @ proj[mod].T + offset + rng.normal(scale=0.8, size=(frames, dims[mod]))
                x = gaussian_filter1d(x, 3, axis=0)  # windowed functionals are smooth in time
                gold = latent[:frames, :2]
                gold = gold + gaussian_filter1d(rng.normal(scale=0.05, size=gold.shape), 5, axis=0)
                w.add(Item(mod, x.astype(np.float32), label_dims=gold.astype(np.float32),
                           corpus="demo-recola", speaker=f"{mod[0]}{split}{r}",
                           recording=f"{mod}-{split}-{r:02d}", split=split))
    return w.manifest


_WRITERS = {"demo": write_demo_omg, "demo-recola": write_demo_recola}


def fingerprint() -> str:
    """Hash of this generator's source: a changed simulation never reuses an old cache."""
    with open(__file__, "rb") as fh:
        return hashlib.sha1(fh.read()).hexdigest()[:10]


def ensure_demo(name: str, root: str | None = None, seed: int = 0) -> str:
    """Returns the folder of the demo corpus ``name``, generating it on first use.

    Generation writes into a temporary folder that is renamed when
    complete, so an interrupted generation is simply redone. The folder name
    holds the generator's fingerprint, so edits to the simulation regenerate.
    """
    if name not in _WRITERS:
        raise ValueError(f"unknown demo corpus {name!r}, expected one of {sorted(_WRITERS)}")
    root = root or cache_dir()
    final = os.path.join(root, f"{name}-v{DEMO_VERSION}-{fingerprint()}-seed{seed}")
    if os.path.isfile(os.path.join(final, schema.MANIFEST_NAME)):
        return final
    tmp = final + ".partial"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    print(f"Generating the simulated {name!r} corpus into {final} (first use) ...", flush=True)
    _WRITERS[name](tmp, seed=seed)
    if os.path.exists(final):  # a manifest-less leftover
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final
