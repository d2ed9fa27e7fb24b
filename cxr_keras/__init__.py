"""cxr_keras: chest X-ray augmentation that never distorts the pathology (Xing, Ge et al., MICCAI 2019)."""
import os

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16 or AMX; on
# AVX2 machines (e.g. AMD Zen 3) they stay off although they run our convolutions 1.2–1.4× faster
# (docs/performance.md). Opt in unless the user chose; TensorFlow reads the variable once, at its first op.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
