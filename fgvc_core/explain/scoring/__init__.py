"""Scoring of explanations and predictions: pointing game and part energy (metrics), deletion/insertion and ROAD
(perturbation), occlusion checks, the checkpoint-level evaluation, map readouts, agreement, confusion and OOD."""
