"""Classification metrics against direct loops."""

from __future__ import annotations

import math

import torch

from fgvc_core.engine.metrics import classification_report, confusion_matrix, per_class_accuracy, topk_accuracy


def test_metrics_match_naive_loops():
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(50, 7, generator=gen).softmax(1)
    targets = torch.randint(0, 6, (50,), generator=gen)  # class 6 never occurs
    for k in (1, 3, 5):
        naive = sum(
            int(t in sorted(range(7), key=lambda c: -p[c])[:k]) for p, t in zip(probs.tolist(), targets.tolist())
        )
        assert topk_accuracy(probs, targets, k) == naive / 50
    conf = confusion_matrix(probs, targets, 7)
    naive_conf = [[0] * 7 for _ in range(7)]
    for p, t in zip(probs.argmax(1).tolist(), targets.tolist()):
        naive_conf[t][p] += 1
    assert conf.tolist() == naive_conf
    acc = per_class_accuracy(conf)
    for c in range(6):
        n = sum(naive_conf[c])
        assert acc[c].item() == (naive_conf[c][c] / n if n else acc[c].item())
    assert math.isnan(acc[6].item())
    report = classification_report({"a": probs}, probs, targets)
    assert report["a"] == report["combined"] and report["num_samples"] == 50
    assert abs(sum(report["confusion"][i][i] for i in range(7)) / 50 - report["combined"]["top1"]) < 1e-12
