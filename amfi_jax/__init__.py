"""AMFI-Net (RGB video + skeleton action recognition) in JAX/Flax."""

__version__ = "0.1.0"
