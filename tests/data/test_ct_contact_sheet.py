"""The README contact sheet: a tile per case, real NIH target boxes in red, drawn boxes in green."""
import numpy as np

from cxr_keras.data.ct import CTRenderer, nih_example_boxes, sample_sheet, synthetic_chest_volume

RED, GREEN = (60, 60, 230), (60, 220, 60)  # BGR, as drawn


def test_examples_are_real_nih_boxes_of_each_finding():
    examples = nih_example_boxes(("Effusion", "Nodule", "Fracture"), seed=1)
    assert set(examples) == {"Effusion", "Nodule"}  # no box of that finding: left out
    for finding, (image, box) in examples.items():
        assert image.endswith(".png") and box[0] == finding and box[3] > 0 and box[4] > 0
    assert nih_example_boxes(("Effusion",), seed=1) == {"Effusion": examples["Effusion"]}


def test_sheet_has_a_healthy_tile_and_one_per_finding():
    renderer = CTRenderer(volume=synthetic_chest_volume(), size=128)
    sheet = sample_sheet(renderer, tile=128, findings=("Effusion", "Nodule"))
    assert sheet.dtype == np.uint8 and sheet.shape == (128, 4 * 128, 3)  # 3 tiles, padded to 4 columns
    tiles = [sheet[:, i * 128:(i + 1) * 128] for i in range(4)]

    def has(tile, colour):
        return bool((tile == np.array(colour, np.uint8)).all(axis=-1).any())

    assert not has(tiles[0], RED) and not has(tiles[0], GREEN)  # healthy: no boxes
    for t in tiles[1:3]:
        assert has(t, RED) and has(t, GREEN)
    assert not tiles[3].any()
