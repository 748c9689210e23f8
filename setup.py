"""magnets_tf: MaGNeTS (Masked Generative Nested Transformers) in TensorFlow/Keras."""
from pathlib import Path

import setuptools

# tools/<name>.py is installed as the package `magnets_tf_tools` (its folder stays where
# the documented `python tools/<name>.py` commands find it) with the console script
# `magnets-<name>` calling its `run()`.
TOOLS = sorted(path.stem for path in (Path(__file__).parent / "tools").glob("*.py")
               if path.stem != "__init__")

setuptools.setup(
    name="magnets_tf",
    version="0.1.0",
    description="Masked generative nested transformers with decode-time scaling (TF/Keras)",
    packages=[*setuptools.find_packages(include=["magnets_tf", "magnets_tf.*"]),
              "magnets_tf_tools"],
    package_dir={"magnets_tf_tools": "tools"},
    entry_points={"console_scripts": [
        f"magnets-{name.replace('_', '-')} = magnets_tf_tools.{name}:run" for name in TOOLS]},
    python_requires=">=3.10",
    install_requires=[
        "keras>=3.15,<3.16",
        "gin-config==0.5.0",
        "absl-py>=2.1",
        "tensorflow-datasets==4.9.10",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26",
        "scipy>=1.11",
        "pillow>=10",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "msgpack>=1.0",
        "imageio>=2.34",
        "imageio-ffmpeg>=0.5",
    ],
    extras_require={
        # tensorflow and tensorflow-cpu share one folder: accelerator users install
        # `tensorflow` themselves and skip this extra (docs/design.md, "Stack").
        "cpu": ["tensorflow-cpu==2.21.0"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "scikit-learn>=1.4"],
    },
)
