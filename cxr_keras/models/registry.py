"""The GAN models the pipeline knows, and how to build, feed, configure and sample each one.

``training.py``, ``synthesis.py`` and the scripts only talk to a model through its spec, so adding a
GAN means adding one entry here. Entries name their functions as "module:attr" and are imported
lazily (``spec.build`` etc. resolve on first use), so importing the registry stays cheap.

A spec provides:
    build(cfg, strategy) -> model                 compiled, variables created, under strategy.scope()
    dataset(records_dir, cfg, seed) -> tf.data    infinite batches (dicts of tensors) for train_step
    config_from_preset(pipeline_cfg) -> cfg       the stage dataclass of a preset
    synthesize(run_dir, records_dir, out_dir, **options) -> dict   writes SYN/ (see docs/interfaces.md)
    config_class                                  the stage dataclass (to read RUN/config.json back)
A model provides ``compile(...)``, ``train_step(batch) -> {name: scalar tensor}``,
``sample_images(batch) -> [B, H, W·k, 1] float in [0, 1]`` and ``checkpoint_items() -> {name: trackable}``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"model code {module!r} is not available ({exc})") from exc
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ImportError(f"{module} has no {attr!r} (needed by the model registry)") from None


@dataclass(frozen=True)
class ModelSpec:
    """Where one GAN's pieces live ("module:attr" references, resolved lazily)."""

    name: str
    build_ref: str
    dataset_ref: str
    config_ref: str
    synthesize_ref: str
    config_class_ref: str
    description: str = ""

    @property
    def build(self) -> Callable:
        return _resolve(self.build_ref)

    @property
    def dataset(self) -> Callable:
        return _resolve(self.dataset_ref)

    @property
    def config_from_preset(self) -> Callable:
        return _resolve(self.config_ref)

    @property
    def synthesize(self) -> Callable:
        return _resolve(self.synthesize_ref)

    @property
    def config_class(self) -> type:
        return _resolve(self.config_class_ref)


_P2P = "cxr_keras.models.pix2pix"
MODELS: Dict[str, ModelSpec] = {
    "pix2pix": ModelSpec(
        "pix2pix", f"{_P2P}:build_model", f"{_P2P}:make_dataset", f"{_P2P}:config_pix2pix",
        "cxr_keras.synthesis:synthesize_pix2pix", "cxr_keras.config:Pix2PixConfig",
        "Pix2Pix on the annotated pairs (box kept, surroundings painted)"),
    "pix2pix_n": ModelSpec(
        "pix2pix_n", f"{_P2P}:build_model", f"{_P2P}:make_dataset", f"{_P2P}:config_pix2pix_n",
        "cxr_keras.synthesis:synthesize_pix2pix", "cxr_keras.config:Pix2PixConfig",
        "Pix2Pix-N: the pairs plus healthy images with random NIH-sized boxes"),
    # The StarGAN baseline; its module provides these names (see cxr_keras/models/stargan.py).
    "stargan": ModelSpec(
        "stargan", "cxr_keras.models.stargan:build_model", "cxr_keras.models.stargan:make_dataset",
        "cxr_keras.models.stargan:config_from_preset", "cxr_keras.models.stargan:synthesize",
        "cxr_keras.config:StarGANConfig", "StarGAN baseline (7 domains, no boxes)"),
}


def register(spec: ModelSpec) -> None:
    """Add (or replace) a model spec, e.g. from a plug-in or a test."""
    MODELS[spec.name] = spec


def get(name: str) -> ModelSpec:
    """The spec of ``name``, with a clear error listing the known models."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}") from None
