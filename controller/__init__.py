"""cloudrun-reconciler: keeps Google Cloud Run services as `desired-state.yaml` declares them.

The pure core (`model`, `diff`, `plan`, `redact`) sits inside a thin shell (`cloudrun`, the only module
that imports `google.cloud.*`; `reconcile`, which composes a pass; `render`; `cli`; `demo`).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
