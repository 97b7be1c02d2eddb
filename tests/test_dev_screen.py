"""The dev screen's fast torch triplet against hand-derived values (torch only; skipped without)."""

import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="torch is not installed (the screen's own dependency)")

# TensorFlow and torch do not share a process here: the check runs in its own
CHECK = r"""
import torch
from benchmarks.dev_screen import batch_hard_torch as f
lab = torch.tensor([0, 0, 1])
emb = torch.tensor([[0.0], [1.0], [3.0]])
# anchor 0: d+ 1, d- 3 -> -2; anchor 1: d+ 1, d- 2 -> -1; anchor 2 has no positive
print(float(f(lab, emb)), float(f(lab, emb, "hinge", 2.5)))
# crossmodal pairs only (rows 0-1 one modality, 2-3 the other): anchors 0 and 1 both 2.0
lab = torch.tensor([0, 0, 1, 0])
emb = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
print(float(f(lab, emb, crossmodal_from=2)))
# unit embeddings: [3, 4] and [6, 8] coincide, [0, 1] is 0.4472 away (d+ 0 - d- for both)
lab = torch.tensor([0, 0, 1])
emb = torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])
print(float(f(lab, emb, unit=True)))
"""


def test_screen_triplet_matches_hand_values():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         check=True).stdout.split()
    assert float(out[0]) == pytest.approx(-1.5, abs=1e-5)
    assert float(out[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(out[2]) == pytest.approx(2.0, abs=1e-5)
    # anchor 0 [.6, .8] vs [0, 1]: sqrt(.36 + .04) = .6325; same for anchor 1
    assert float(out[3]) == pytest.approx(0.0 - 0.6325, abs=1e-3)
