"""Hand-crafted texture descriptors x classical classifiers (Spanhol et al. 2016).

Importing this package registers the 24 methods `<descriptor>_<classifier>`: descriptors lbp,
clbp, lpq, glcm, orb, pftas; classifiers 1nn, qda, svm, rf."""

from bhbench_baselines.handcrafted import methods  # noqa: F401  (registration side effects)
