"""Built-in methods. Importing this package registers them (through the `bhbench.methods` entry
point, the same way an installed plugin is found); it never imports torch."""

from bhbench_baselines import deep, handcrafted, probe, reference  # noqa: F401  (registration side effects)
