"""`cargo xtask device-bundle`: copies the pure-Python reference packages the benchmark suite
imports (diffusers, pytorch-fid, huggingface_hub) from this venv into SITE, for a GPU machine
whose Python has PyTorch but no network. diffusers' pipeline subpackages (two thirds of its
size) are left out: the suite uses models, schedulers and training_utils, which import only
`diffusers/pipelines/*.py`.

  bundle_reference.py SITE
"""
import importlib
import os
import shutil
import sys


def skip(directory, names):
    out = {"__pycache__", "modular_pipelines"}
    if os.path.basename(directory) == "pipelines":
        out |= {n for n in names if os.path.isdir(os.path.join(directory, n))}
    return out & set(names)


def main():
    site = sys.argv[1]
    shutil.rmtree(site, ignore_errors=True)
    for name in ("diffusers", "pytorch_fid", "huggingface_hub"):
        src = os.path.dirname(importlib.import_module(name).__file__)
        shutil.copytree(src, os.path.join(site, name), ignore=skip)


if __name__ == "__main__":
    main()
