"""Pure tensor maths shared by the models and the explanations (attention rollout, ...).

The lowest layer above ``fgvc_core.errors``: modules here import only torch, numpy and ``fgvc_core.errors``, so
that ``models`` (the RAMS-Trans DPPM) and ``explain`` (the rollout pages) can both use them without one
importing the other.
"""
