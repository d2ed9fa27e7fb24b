"""Helpers shared by the GAN tests (imported as ``from gankit import ...``: tests/gan is not a package,
pytest puts this folder on sys.path, as tests/faults does for faultkit.py)."""
from cxr_keras.config import Pix2PixConfig

S = 64  # image side of the tiny configs and of the conftest records
TINY_NET = dict(image_size=S, gen_filters=4, disc_filters=4, batch_size=2, num_downs=4, disc_layers=2)
TINY_PIX2PIX = dict(TINY_NET, steps=6, log_every=1, image_every=2, checkpoint_every=2, keep_checkpoints=2)


def tiny_net_cfg(**kw) -> Pix2PixConfig:
    """A 64² Pix2Pix network (loop fields left at their defaults); ``kw`` overrides any field."""
    return Pix2PixConfig(**{**TINY_NET, **kw})


def tiny_cfg(**kw) -> Pix2PixConfig:
    """A 64² Pix2Pix small enough to train a few steps in seconds on a CPU; ``kw`` overrides any field."""
    return Pix2PixConfig(**{**TINY_PIX2PIX, **kw})
