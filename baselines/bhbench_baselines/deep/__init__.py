"""Deep models: CNN, multi-task CNN, timm backbones +/- SE, BCNN, Fast BCNN. Importing this registers
them without importing torch (methods.py is torch-free; the rest is imported by fit/predict)."""

from bhbench_baselines.deep import methods  # noqa: F401  (registration side effects)
