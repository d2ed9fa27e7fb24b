"""Build GAN pair records, detection records, the label map and the split manifest from an NIH folder."""
import argparse
import json
import sys

from cxr_keras.cli import checks
from cxr_keras.config import DataConfig, RecordsConfig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nih-root", required=True,
                   help="NIH ChestX-ray14 folder: BBox_List_2017.csv, Data_Entry_2017*.csv, images/")
    p.add_argument("--out", default="tfrecords", type=checks.output_dir, help="output folder (default: tfrecords/)")
    p.add_argument("--image-size", type=checks.image_size, default=256)
    p.add_argument("--healthy", type=checks.nonnegative_int, default=2000,
                   help='"No Finding" images for Pix2Pix-N / StarGAN')
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--train-frac", type=checks.open_fraction, default=0.7)
    p.add_argument("--workers", type=checks.positive_int, default=2, help="image decoding processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)

    from cxr_keras.data.nih import MetadataError
    from cxr_keras.records.build import build_records

    try:
        info = build_records(
            a.nih_root, a.out,
            DataConfig(healthy=a.healthy, seed=a.seed, train_frac=a.train_frac),
            RecordsConfig(image_size=a.image_size, workers=a.workers),
            progress=not a.quiet,
        )
    except (MetadataError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"make_tfrecords: {exc}")
    c = info["counts"]
    print(f"{c['annotations']} boxes on {c['images']} images: {c['train']} train / {c['test']} test; "
          f"healthy {c['healthy']['train']} train / {c['healthy']['test']} test; "
          f"{c['skipped']} skipped; records in {a.out} ({info['seconds']} s)")
    print(json.dumps(c["per_finding"]))


if __name__ == "__main__":
    sys.exit(main())
