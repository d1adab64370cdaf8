"""Hand-crafted texture descriptors x classical classifiers (Spanhol et al. 2016)."""
