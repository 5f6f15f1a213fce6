"""What trains here: the TensorFlow build installed and the device it runs on, so runs and served
models say it, and a GPU that TensorFlow cannot use is reported instead of silently idle."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path

from packaging.requirements import Requirement

from lstm_ae.errors import UserError

log = logging.getLogger(__name__)

# `make install` picks one by the machine (docs/sharing.md); both provide `import tensorflow`.
GPU_BUILD, CPU_BUILD = "tensorflow", "tensorflow-cpu"
GPU_EXTRA = "and-cuda"  # tensorflow[and-cuda]: the CUDA and cuDNN libraries as pip packages
CPU_INFO = Path("/proc/cpuinfo")
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU while the NVIDIA driver is loaded


class NoTensorFlowError(UserError):
    """Neither TensorFlow build is installed: no model can be trained, saved or served here."""


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def extra_requirements(name: str, extra: str) -> list[Requirement]:
    """What ``name[extra]`` adds to ``name`` on this platform, from the installed metadata."""
    extra_only = []
    for line in importlib.metadata.requires(name) or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""}):
            extra_only.append(requirement)
    return extra_only


def tensorflow_requirement() -> str:
    """The pin a served model needs to run as it was trained: the TensorFlow build installed here.

    ``tensorflow[and-cuda]`` when the GPU build and its CUDA libraries are installed, so a model
    served from a GPU machine asks for the GPU build, and ``tensorflow-cpu`` from a CPU install.
    """
    if version := installed_version(GPU_BUILD):
        cuda = extra_requirements(GPU_BUILD, GPU_EXTRA)
        with_cuda = bool(cuda) and all(installed_version(r.name) for r in cuda)
        return f"{GPU_BUILD}[{GPU_EXTRA}]=={version}" if with_cuda else f"{GPU_BUILD}=={version}"
    if version := installed_version(CPU_BUILD):
        return f"{CPU_BUILD}=={version}"
    raise NoTensorFlowError(f"neither {GPU_BUILD} nor {CPU_BUILD} is installed; run `make install`")


def cpu_name(cpuinfo: str) -> str:
    """The processor's model name from /proc/cpuinfo's text (x86 `model name`, Arm `Hardware`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_description() -> str:
    """E.g. 'CPU: AMD EPYC (2 cores)': the cores this process may use, which bound its speed."""
    cpuinfo = CPU_INFO.read_text(encoding="utf-8", errors="replace") if CPU_INFO.exists() else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU: {cpu_name(cpuinfo)} ({cores} cores)"


def nvidia_gpu_present() -> bool:
    """Whether this machine has an NVIDIA GPU that its driver knows, whatever TensorFlow sees."""
    return (NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir())) or shutil.which("nvidia-smi") is not None


@functools.cache
def training_device() -> str:
    """The device Keras trains on here, for the `device` tag of every training run: the first GPU
    TensorFlow sees (Keras uses one unless told otherwise), else the CPU.

    Training on the CPU on a machine with an NVIDIA GPU is logged as a warning, once per process:
    with tensorflow-cpu installed that would otherwise go unnoticed for a whole run.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        return f"GPU: {name}" + (f" (1 of {len(gpus)})" if len(gpus) > 1 else "")
    if nvidia_gpu_present():
        build = tensorflow_requirement()
        if build.startswith(CPU_BUILD):
            hint = "`make install GPU=1` installs TensorFlow's GPU build (docs/sharing.md)"
        else:
            hint = "check the NVIDIA driver with `nvidia-smi` and TF_CPP_MIN_LOG_LEVEL=0's messages"
        log.warning("this machine has an NVIDIA GPU, but %s trains on the CPU: %s", build, hint)
    return cpu_description()


# pip leaves these two out of `pip freeze`, and so out of requirements.lock; a venv brings its own.
NOT_PINNED = frozenset({"pip", "setuptools", "wheel"})


def pins_from_pip_report(report: dict) -> str:
    """requirements-gpu.lock's text from `pip install --dry-run --report`'s JSON (`make gpu-lock`):
    every package pip would install, pinned, in requirements.lock's case-insensitive order."""
    pins = {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}
    names = sorted((name for name in pins if name.lower() not in NOT_PINNED), key=str.lower)
    header = "# Written by `make gpu-lock`: requirements.lock with the GPU build of TensorFlow (GPU=1)"
    return "\n".join([header, *(f"{name}=={pins[name]}" for name in names)]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(pins_from_pip_report(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
