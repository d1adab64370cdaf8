"""Frozen-backbone probes: any timm model (hub names and local weights included) as a fixed feature
extractor, and a logistic-regression, k-NN or linear-SVM head tuned on training patients. Importing
this registers them without importing torch."""

from bhbench_baselines.probe import methods  # noqa: F401  (registration side effects)
