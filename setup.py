"""cxr_keras: pathology-preserving chest X-ray augmentation (Xing, Ge et al., MICCAI 2019)."""
from setuptools import find_packages, setup

setup(
    name="cxr_keras",
    version="0.1.0",
    description="Pix2Pix chest X-ray augmentation that never distorts the pathology, "
    "with StarGAN baseline, TF Object Detection API protocols and a reader study.",
    packages=find_packages(include=["cxr_keras", "cxr_keras.*"]),
    package_data={"cxr_keras.data": ["nih_metadata/*.csv.gz"],
                  "cxr_keras.detection": ["templates/*.config"],
                  "cxr_keras.study": ["templates/*.html", "static/*"]},
    python_requires=">=3.10,<3.12",
    # The pinned environment lives in requirements/lock.txt (installed by `make venv`).
    install_requires=["tensorflow==2.15.1", "numpy", "pandas", "opencv-python-headless"],
)
