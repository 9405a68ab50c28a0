"""omics_cl: contrastive learning for single-cell multi-omics on JAX (scanpy-style API)."""
from omics_cl import datasets, get, io, metrics, pl, pp, settings, tl

__version__ = "0.1.0"
__all__ = ["__version__", "datasets", "get", "io", "metrics", "pl", "pp", "settings", "tl"]
