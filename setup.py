"""Package list for setuptools (everything else is in pyproject.toml).

The config tree stays at the top of the repo (`conf/`) and is shipped inside the package as `lora_lab.conf`,
a mapping pyproject.toml's static tables cannot express together with package discovery.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["lora_lab*", "hydra_plugins*"], exclude=["*__pycache__*"]),
              "lora_lab.conf"],
    package_dir={"lora_lab.conf": "conf"},
)
