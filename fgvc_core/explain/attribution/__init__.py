"""Attribution methods: which pixels a prediction rests on (per-stage CAMs of CRA-SMRA, Grad-CAM family on a ViT).

Attention rollout itself is pure tensor maths shared with the models, in :mod:`fgvc_core.ops.rollout`.
"""
