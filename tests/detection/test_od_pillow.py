"""The OD API's own image summaries (its evaluation draws labelled boxes) work on the pinned Pillow."""
import subprocess
import sys

import PIL

CODE = """
import numpy as np
from object_detection.utils import visualization_utils as vu
image = np.zeros((64, 64, 3), np.uint8)
vu.draw_bounding_box_on_image_array(image, 0.2, 0.2, 0.8, 0.8, color='red',
                                    display_str_list=['Cardiomegaly: 90%'])
assert image.any(), 'nothing drawn'
print('drawn')
"""


def test_od_visualisation_draws_labelled_boxes_in_a_plain_process():
    """A fresh interpreter (start-up hook only, no cxr_keras import) draws what OD evaluation draws."""
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "drawn" in proc.stdout


def test_patch_pillow_restores_getsize_with_pillow9_semantics():
    import cxr_keras_od_startup as startup
    from PIL import ImageFont

    startup.patch_pillow()
    font = ImageFont.load_default()
    width, height = font.getsize("Effusion")
    left, top, right, bottom = font.getbbox("Effusion")
    assert (width, height) == (right, bottom) and width > 0 and height > 0
    assert int(PIL.__version__.split(".")[0]) >= 10  # the pin the shim exists for
