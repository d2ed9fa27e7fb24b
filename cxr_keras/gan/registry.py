"""The GAN models the pipeline knows, and how to build, feed, configure and sample each one.

The training loop, synthesis and the CLI only talk to a model through its spec, so adding a GAN
means adding one entry here (or ``register`` from a plug-in). A spec provides:
    build(cfg, strategy) -> model                 compiled, variables created, under strategy.scope()
    dataset(records_dir, cfg, seed) -> tf.data    infinite batches (dicts of tensors) for train_step
    config_from_preset(pipeline_cfg) -> cfg       the stage dataclass of a preset
    synthesize(run, records_dir, out_dir, **options) -> dict   writes SYN/ from a loaded run
                                                  (``gan.runs.LoadedRun``; see ``gan.synthesis``)
    config_class                                  the stage dataclass (to read a run's config back)
A model provides ``compile(...)``, ``train_step(batch) -> {name: scalar tensor}``, ``metrics`` (one
mean tracker per loss), ``sample_images(batch) -> [B, H, W·k, 1] float in [0, 1]`` and
``checkpoint_items() -> {name: trackable}``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict

from cxr_keras.config import PipelineConfig, Pix2PixConfig, StarGANConfig
from cxr_keras.gan.inputs import pix2pix_dataset, stargan_train_dataset
from cxr_keras.gan.synthesis_pix2pix import synthesize_pix2pix
from cxr_keras.gan.synthesis_stargan import synthesize_stargan
from cxr_keras.models import pix2pix, stargan


@dataclass(frozen=True)
class ModelSpec:
    """Where one GAN's pieces live."""

    name: str
    build: Callable
    dataset: Callable
    config_from_preset: Callable[[PipelineConfig], object]
    synthesize: Callable
    config_class: type
    description: str = ""


def pix2pix_config(pipeline_cfg: PipelineConfig) -> Pix2PixConfig:
    """The ``pix2pix`` stage config of a preset: annotated pairs only."""
    return dataclasses.replace(pipeline_cfg.pix2pix, use_healthy=False, augmentation=pipeline_cfg.augment)


def pix2pix_n_config(pipeline_cfg: PipelineConfig) -> Pix2PixConfig:
    """The ``pix2pix_n`` stage config of a preset: annotated pairs plus healthy images with random boxes."""
    return dataclasses.replace(pipeline_cfg.pix2pix, use_healthy=True, augmentation=pipeline_cfg.augment)


def stargan_config(pipeline_cfg: PipelineConfig) -> StarGANConfig:
    """The ``stargan`` stage config of a preset."""
    return pipeline_cfg.stargan


MODELS: Dict[str, ModelSpec] = {
    "pix2pix": ModelSpec(
        "pix2pix", pix2pix.build_model, pix2pix_dataset, pix2pix_config, synthesize_pix2pix, Pix2PixConfig,
        "Pix2Pix on the annotated pairs (box kept, surroundings painted)"),
    "pix2pix_n": ModelSpec(
        "pix2pix_n", pix2pix.build_model, pix2pix_dataset, pix2pix_n_config, synthesize_pix2pix, Pix2PixConfig,
        "Pix2Pix-N: the pairs plus healthy images with random NIH-sized boxes"),
    "stargan": ModelSpec(
        "stargan", stargan.build_model, stargan_train_dataset, stargan_config, synthesize_stargan, StarGANConfig,
        "StarGAN baseline (7 domains, no boxes)"),
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
