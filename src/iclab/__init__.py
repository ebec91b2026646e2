"""iclab: a reproducible pipeline that studies why in-context learning works in causal LMs."""

__version__ = "0.1.0"
