"""The NIH metadata layer: the paper's numbers on the real metadata, and both CSV dialects."""
import gzip

import pytest

from cxr_keras.config import DataConfig
from cxr_keras.data import nih
from cxr_keras.paths import RecordsPaths

PAPER_COUNTS = {"Atelectasis": 180, "Cardiomegaly": 146, "Effusion": 153,
                "Infiltrate": 123, "Pneumonia": 120, "Pneumothorax": 98}


def test_real_metadata_gives_the_paper_numbers():
    m = nih.build_manifest(None, DataConfig())
    c = m.counts()
    assert c["annotations"] == 820
    assert c["images"] == 741
    assert (c["train"], c["test"]) == (573, 247)
    assert {f: v["total"] for f, v in c["per_finding"].items()} == PAPER_COUNTS
    assert len(c["per_finding"]) == 6
    # stratified: each finding is split 70/30 (floor of 70% to train)
    for f, v in c["per_finding"].items():
        assert v["train"] == int(0.7 * PAPER_COUNTS[f] + 1e-9)
    # an image never straddles the split
    splits = {}
    for a in m.annotations:
        assert splits.setdefault(a.image, a.split) == a.split
    assert c["healthy"]["train"] == 2000


def test_split_is_seeded_and_healthy_are_no_finding():
    a = nih.build_manifest(None, DataConfig(healthy=50, seed=3))
    b = nih.build_manifest(None, DataConfig(healthy=50, seed=3))
    c = nih.build_manifest(None, DataConfig(healthy=50, seed=4))
    key = lambda m: [(x.image, x.finding, x.split) for x in m.annotations]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)
    entries = nih.read_data_entry(nih.metadata_paths(None)[1]).set_index("image")
    for h in a.healthy:
        assert entries.loc[h["image"], "labels"] == ("No Finding",)
    assert not {h["image"] for h in a.healthy} & {x.image for x in a.annotations}


def test_infiltration_maps_to_infiltrate():
    entries = nih.read_data_entry(nih.metadata_paths(None)[1])
    flat = {lab for labels in entries["labels"] for lab in labels}
    assert "Infiltrate" in flat and "Infiltration" not in flat


def test_official_dialect_trailing_commas_and_patient_sex(tmp_path):
    (tmp_path / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "a.png,Infiltrate,10,20,30,40,,,\n"
        "b.png,Nodule,1,2,3,4,,,\n")
    (tmp_path / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Sex,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
        "a.png,Infiltration|Effusion,0,1,50,M,PA,2500,2048,0.14,0.14,\n")
    bbox, entry = nih.metadata_paths(tmp_path)
    boxes = nih.read_bbox_list(bbox)
    assert list(boxes["finding"]) == ["Infiltrate", "Nodule"]
    assert boxes.loc[0, ["x", "y", "w", "h"]].tolist() == [10, 20, 30, 40]
    e = nih.read_data_entry(entry)
    assert e.loc[0, "labels"] == ("Infiltrate", "Effusion") and e.loc[0, "sex"] == "M"


def test_gzipped_metadata_is_accepted(tmp_path):
    with gzip.open(tmp_path / "BBox_List_2017.csv.gz", "wt") as f:
        f.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Effusion,1,2,3,4\n")
    with gzip.open(tmp_path / "Data_Entry_2017_v2020.csv.gz", "wt") as f:
        f.write("Image Index,Finding Labels,Patient ID\na.png,Effusion,1\n")
    m = nih.build_manifest(tmp_path, DataConfig(healthy=0))
    assert [(a.image, a.finding) for a in m.annotations] == [("a.png", "Effusion")]


def test_missing_column_names_the_file(tmp_path):
    (tmp_path / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    (tmp_path / "Data_Entry_2017.csv").write_text("Image Index,Patient ID\na.png,1\n")
    with pytest.raises(nih.MetadataError, match=r"Data_Entry_2017\.csv: missing column\(s\) Finding Labels"):
        nih.read_data_entry(tmp_path / "Data_Entry_2017.csv")


def test_bad_box_list_header_and_numbers(tmp_path):
    p = tmp_path / "BBox_List_2017.csv"
    p.write_text("Image,Label\na.png,Effusion\n")
    with pytest.raises(nih.MetadataError, match="BBox_List_2017.csv: expected header"):
        nih.read_bbox_list(p)
    p.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Effusion,1,two,3,4\n")
    with pytest.raises(nih.MetadataError, match="line 2: box coordinates are not numbers"):
        nih.read_bbox_list(p)


def test_unknown_labels_and_zero_area_boxes_are_counted_skips(tmp_path):
    (tmp_path / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "a.png,Effusion,1,2,3,4\nb.png,Unicorn,1,2,3,4\nc.png,Effusion,1,2,0,4\nd.png,Mass,1,2,3,4\n")
    (tmp_path / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\na.png,Effusion\n")
    m = nih.build_manifest(tmp_path, DataConfig(healthy=0))
    assert [a.image for a in m.annotations] == ["a.png"]
    reasons = sorted(s["reason"] for s in m.skipped)
    assert len(reasons) == 2
    assert "unknown finding label 'Unicorn'" in reasons[0] and "zero-area" in reasons[1]


def test_images_missing_on_disk_are_skipped_before_the_split(tiny_nih):
    root, boxes = tiny_nih
    annotated = [n for n, rows in boxes.items() if rows]
    available = set(nih.find_images(root)) - {annotated[0]}
    m = nih.build_manifest(root, DataConfig(healthy=2), available=available)
    assert annotated[0] not in {a.image for a in m.annotations}
    assert any(s["item"] == annotated[0] and "missing on disk" in s["reason"] for s in m.skipped)


def test_manifest_round_trip(tmp_path):
    m = nih.build_manifest(None, DataConfig(healthy=10))
    m.save(RecordsPaths(tmp_path).manifest)
    back = nih.Manifest.load(RecordsPaths(tmp_path).manifest)
    assert back.counts() == m.counts()
    assert [a.ann_id for a in back.split("test")] == [a.ann_id for a in m.split("test")]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(nih.MetadataError, match="bad.json: manifest is not valid JSON"):
        nih.Manifest.load(tmp_path / "bad.json")


def test_find_images_accepts_both_layouts(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x")
    (tmp_path / "images_002" / "images").mkdir(parents=True)
    (tmp_path / "images_002" / "images" / "b.png").write_bytes(b"x")
    assert set(nih.find_images(tmp_path)) == {"a.png", "b.png"}


def test_scarce_healthy_images_are_shared_between_train_and_test():
    import pandas as pd

    entries = pd.DataFrame({"image": [f"h{i}.png" for i in range(12)], "labels": [("No Finding",)] * 12})
    got = nih.sample_healthy(entries, n_train=12, n_test=5, seed=0)
    splits = [h["split"] for h in got]
    assert len(got) == 12 and splits.count("test") >= 3 and splits.count("train") >= 7
    full = nih.sample_healthy(entries, n_train=7, n_test=5, seed=0)
    assert [h["split"] for h in full].count("test") == 5
