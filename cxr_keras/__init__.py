"""cxr_keras: chest X-ray augmentation that never distorts the pathology (Xing, Ge et al., MICCAI 2019)."""
__version__ = "0.1.0"
