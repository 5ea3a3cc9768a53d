"""Training monitoring: metric writers (TensorBoard + JSON Lines), parameter table, progress line.

Named `monitoring` rather than `logging` so that it never shadows the standard library module.
"""

from amfi_jax.monitoring.progress import ProgressBar
from amfi_jax.monitoring.writers import MetricWriter, flatten_config, parameter_overview

__all__ = ["MetricWriter", "ProgressBar", "flatten_config", "parameter_overview"]
