"""wgan: an experiment runner for weight clipping in Wasserstein GANs."""

__version__ = "0.1.0"
