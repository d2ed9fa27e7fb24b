"""The blinded real/fake reader study (Table 1): build the set, add readers, serve, score, auto-judge.

  reader_study.py build --real RECORDS --generated pix2pix=SYN1 stargan=SYN2 --out STUDY
  reader_study.py add-reader STUDY NAME         (prints the reader's personal link)
  reader_study.py serve STUDY [--host 127.0.0.1] [--port 8000]
  reader_study.py score STUDY                   (STUDY/scores/table1.md, .csv, ...)
  reader_study.py auto-judge STUDY [--epochs N] [--no-frd]   (STUDY/auto_judge.json, .md; with controls)
"""
import argparse
import pathlib
import sys

from cxr_keras.cli import checks
from cxr_keras.config import PRESETS, preset, replace


def _study_config(a):
    return replace(preset(a.preset).study, per_finding=getattr(a, "per_finding", None),
                   seed=getattr(a, "seed", None), image_size=getattr(a, "image_size", None),
                   border_crop_frac=getattr(a, "border_crop", None), judge_epochs=getattr(a, "epochs", None),
                   judge_folds=getattr(a, "folds", None), judge_frd=False if getattr(a, "no_frd", False) else None,
                   common_resolution=False if getattr(a, "native_resolution", False) else None)


def cmd_build(a):
    from cxr_keras.study.build import build_study, format_report, parse_generated_arg

    report = build_study(a.real, parse_generated_arg(a.generated), a.out, _study_config(a),
                         real_split=a.real_split, force=a.force)
    print(format_report(report))
    print(f"next: reader_study.py add-reader {a.out} NAME")


def cmd_add_reader(a):
    from cxr_keras.study.db import add_reader
    from cxr_keras.study.layout import paths

    reader = add_reader(paths(a.study).db, a.name)
    print(f"{reader.name}: {a.base_url.rstrip('/')}/r/{reader.token}")


def cmd_links(a):
    from cxr_keras.study.app import reader_links

    for name, link in reader_links(a.study, a.base_url):
        print(f"{name}: {link}")


def cmd_serve(a):
    from cxr_keras.study.app import serve

    serve(a.study, host=a.host, port=a.port)


def cmd_score(a):
    from cxr_keras.study.score import markdown, write_scores

    result = write_scores(a.study)
    print(markdown(result))
    print(f"written: {pathlib.Path(a.study) / 'scores'}/table1.md, table1.csv, judgements.csv, "
          "metrics.csv, scores.json")


def cmd_auto_judge(a):
    from cxr_keras.study.judge import markdown, write_auto_judge

    report = write_auto_judge(a.study, _study_config(a))
    print(markdown(report))
    print(f"written: {pathlib.Path(a.study) / 'auto_judge.json'}, auto_judge.md")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="config preset for defaults")
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="draw, crop, resize, shuffle and anonymise the study images")
    b.add_argument("--real", required=True, help="RECORDS folder (pairs_*.tfrecord) or folder with manifest.json")
    b.add_argument("--generated", nargs="+", required=True, metavar="NAME=DIR", help="SYN folders, e.g. pix2pix=SYN")
    b.add_argument("--out", required=True, type=checks.output_dir, help="STUDY_DIR to create")
    b.add_argument("--per-finding", type=checks.positive_int, help="images per finding and source (default 25)")
    b.add_argument("--seed", type=checks.seed)
    b.add_argument("--image-size", type=checks.image_size, help="side of the shown images (default 224)")
    b.add_argument("--border-crop", type=checks.float_range(0.0, 0.5, hi_open=True),
                   help="fraction cut from every edge (default 0.06)")
    b.add_argument("--native-resolution", action="store_true",
                   help="keep each source's own resolution (default: every image first area-resized down to the "
                        "smallest native size among the sources, so resolution cannot give a source away)")
    b.add_argument("--real-split", default="test+train", choices=["test", "train", "test+train"],
                   help="RECORDS split(s) for the real images; test+train prefers test (default)")
    b.add_argument("--force", action="store_true", help="replace an existing study (its answers are lost)")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("add-reader", help="register a reader and print their personal link")
    r.add_argument("study")
    r.add_argument("name")
    r.add_argument("--base-url", default="http://127.0.0.1:8000")
    r.set_defaults(func=cmd_add_reader)

    ln = sub.add_parser("links", help="print every reader's personal link")
    ln.add_argument("study")
    ln.add_argument("--base-url", default="http://127.0.0.1:8000")
    ln.set_defaults(func=cmd_links)

    s = sub.add_parser("serve", help="run the reader web app")
    s.add_argument("study")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=checks.port, default=8000)
    s.set_defaults(func=cmd_serve)

    sc = sub.add_parser("score", help="Table 1, sensitivity/specificity and kappa from the answers")
    sc.add_argument("study")
    sc.set_defaults(func=cmd_score)

    j = sub.add_parser("auto-judge", help="classifier two-sample test per generator (not a radiologist)")
    j.add_argument("study")
    j.add_argument("--epochs", type=checks.positive_int)
    j.add_argument("--folds", type=checks.int_range(2, why="k-fold needs at least 2 folds"))
    j.add_argument("--seed", type=checks.seed)
    j.add_argument("--no-frd", action="store_true", help="skip the Fréchet Radiomic Distance (needs frd-score)")
    j.set_defaults(func=cmd_auto_judge)

    a = p.parse_args(argv)
    from cxr_keras.study.db import StudyDBError
    from cxr_keras.study.layout import StudyError

    try:
        a.func(a)
    except (StudyError, StudyDBError, ValueError, OSError) as exc:
        sys.exit(f"reader_study {a.cmd}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
