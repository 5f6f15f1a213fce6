"""The TensorFlow build and the device: what `make install` picks, what a served model asks for,
what a training run is tagged with, and that the GPU lock stays the CPU lock with the GPU build."""

from __future__ import annotations

import importlib.metadata
import logging
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import tensorflow as tf

from lstm_ae import hardware
from lstm_ae.tracking import registry, runs

REPO = Path(__file__).resolve().parents[1]
CUDA_REQUIRES = [
    'nvidia-cublas-cu12<13.0,>=12.5.3.2; extra == "and-cuda"',
    'nvidia-cudnn-cu12<10.0,>=9.3.0.75; extra == "and-cuda"',
    'tensorflow-io-gcs-filesystem>=0.23.1; extra == "gcs-filesystem"',
    "numpy>=1.26.0",
]


def fake_install(monkeypatch: pytest.MonkeyPatch, installed: dict[str, str]) -> None:
    """Pretend exactly ``installed`` (name -> version) is installed, the GPU build with its extras."""
    monkeypatch.setattr(hardware, "installed_version", installed.get)
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: CUDA_REQUIRES)


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"tensorflow-cpu": "2.21.0"}, "tensorflow-cpu==2.21.0"),
        (
            {"tensorflow": "2.21.0", "nvidia-cublas-cu12": "12.9.3.13", "nvidia-cudnn-cu12": "9.28.0.42"},
            "tensorflow[and-cuda]==2.21.0",
        ),
        ({"tensorflow": "2.21.0", "nvidia-cublas-cu12": "12.9.3.13"}, "tensorflow==2.21.0"),  # no cuDNN
        ({"tensorflow": "2.21.0"}, "tensorflow==2.21.0"),
    ],
    ids=["cpu-build", "gpu-build-with-cuda", "gpu-build-missing-cudnn", "gpu-build-without-cuda"],
)
def test_the_served_model_asks_for_the_build_installed(
    monkeypatch: pytest.MonkeyPatch, installed: dict[str, str], expected: str
) -> None:
    fake_install(monkeypatch, installed)
    assert hardware.tensorflow_requirement() == expected
    assert registry.serving_requirements()[0] == expected
    assert not any(r.startswith("tensorflow") for r in registry.serving_requirements()[1:])


def test_without_tensorflow_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_install(monkeypatch, {})
    with pytest.raises(
        hardware.NoTensorFlowError, match=r"neither tensorflow nor tensorflow-cpu .*make install"
    ):
        hardware.tensorflow_requirement()


def test_here_it_names_the_distribution_that_is_installed() -> None:
    name = re.split(r"[\[=]", hardware.tensorflow_requirement())[0]
    assert importlib.metadata.version(name) == tf.__version__


@pytest.mark.parametrize(
    ("cpuinfo", "name"),
    [
        (
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: avx2\n",
            "AMD EPYC 7B13",
        ),
        ("Processor\t: ARMv7 Processor rev 4 (v7l)\nHardware\t: BCM2835\n", "ARMv7 Processor rev 4 (v7l)"),
    ],
    ids=["x86", "arm"],
)
def test_cpu_name_comes_from_proc_cpuinfo(cpuinfo: str, name: str) -> None:
    assert hardware.cpu_name(cpuinfo) == name


def test_cpu_name_falls_back_to_the_platform() -> None:
    assert hardware.cpu_name("processor\t: 0\nBogoMIPS\t: 50.00\n")  # arm64 kernels name no model


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch):
    """training_device() afresh (it is cached per process), with the GPUs TensorFlow sees faked."""

    def with_gpus(names: list[str], nvidia_present: bool) -> str:
        gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(len(names))]
        details = {gpu.name: {"device_name": name} for gpu, name in zip(gpus, names)}
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
        monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[gpu.name])
        monkeypatch.setattr(hardware, "nvidia_gpu_present", lambda: nvidia_present)
        hardware.training_device.cache_clear()
        return hardware.training_device()

    yield with_gpus
    hardware.training_device.cache_clear()


def test_a_gpu_run_is_tagged_with_the_gpu_it_trains_on(device) -> None:
    assert device(["NVIDIA H200"], nvidia_present=True) == "GPU: NVIDIA H200"
    assert device(["NVIDIA H200", "NVIDIA H200"], nvidia_present=True) == "GPU: NVIDIA H200 (1 of 2)"


def test_a_cpu_run_is_tagged_with_the_cpu_and_its_cores(device, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lstm_ae.hardware"):
        tag = device([], nvidia_present=False)
    assert re.fullmatch(r"CPU: .+ \(\d+ cores\)", tag) and not caplog.records


def test_a_gpu_left_idle_by_the_cpu_build_is_reported_with_the_fix(
    device, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_install(monkeypatch, {"tensorflow-cpu": "2.21.0"})
    with caplog.at_level(logging.WARNING, logger="lstm_ae.hardware"):
        assert device([], nvidia_present=True).startswith("CPU: ")
    (record,) = caplog.records
    assert "NVIDIA GPU" in record.message and "`make install GPU=1`" in record.message


def test_every_training_run_carries_the_device_tag(device) -> None:
    device(["NVIDIA H200"], nvidia_present=True)
    assert runs.run_tags("ab" * 16)["device"] == "GPU: NVIDIA H200"


def test_a_run_that_trains_nothing_is_tagged_without_asking_tensorflow(monkeypatch) -> None:
    """A study's run: its trials train elsewhere, and its process never imports TensorFlow."""
    monkeypatch.setattr(hardware, "training_device", lambda: pytest.fail("asked for the device"))
    assert "device" not in runs.run_tags("ab" * 16, trains=False)


def test_pins_from_a_pip_report_leave_out_what_a_venv_brings() -> None:
    report = {
        "install": [
            {"metadata": {"name": name, "version": version}}
            for name, version in [
                ("tensorflow", "2.21.0"),
                ("wheel", "0.48.0"),
                ("absl-py", "2.5.1"),
                ("PyYAML", "6.0.3"),
            ]
        ]
    }
    lines = hardware.pins_from_pip_report(report).splitlines()
    assert lines[0].startswith("# Written by `make gpu-lock`")
    assert lines[1:] == ["absl-py==2.5.1", "PyYAML==6.0.3", "tensorflow==2.21.0"]


def pins(path: Path) -> dict[str, str]:
    """name (normalised) -> version, for a lock file of `name==version` lines."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_the_gpu_lock_is_the_cpu_lock_with_tensorflows_gpu_build() -> None:
    """Fails when requirements.lock changed without `make gpu-lock`: a GPU install would differ."""
    cpu, gpu = pins(REPO / "requirements.lock"), pins(REPO / "requirements-gpu.lock")
    assert gpu.pop("tensorflow") == cpu.pop("tensorflow-cpu")
    cuda = {name: gpu.pop(name) for name in list(gpu) if name.startswith("nvidia-")}
    assert gpu == cpu, "requirements-gpu.lock is out of date: run `make gpu-lock`"
    # tensorflow-cpu's metadata lists the same and-cuda extra as the GPU build's.
    extra = hardware.extra_requirements("tensorflow-cpu", hardware.GPU_EXTRA)
    assert {r.name for r in extra} == set(cuda)
    for requirement in extra:
        assert requirement.specifier.contains(cuda[requirement.name]), requirement


def make_dry_run(tmp_path: Path, *variables: str, path: str | None = None) -> str:
    """The commands `make install` would run into a new venv, without running them."""
    env = {"PATH": path} if path else None
    return subprocess.run(
        ["make", "-n", "-C", str(REPO), "install", f"VENV={tmp_path / 'venv'}", *variables],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout


@pytest.mark.parametrize(
    ("variables", "lock", "removed"),
    [
        (("GPU=1",), "requirements-gpu.lock", "tensorflow-cpu"),
        (("GPU=0",), "requirements.lock", "tensorflow"),
    ],
)
def test_make_install_gpu_chooses_the_lock(
    tmp_path: Path, variables: tuple[str, ...], lock: str, removed: str
) -> None:
    commands = make_dry_run(tmp_path, *variables)
    assert f"pip install --quiet -r {lock}\n" in commands
    assert f"pip uninstall -qq --yes {removed}\n" in commands


def test_make_install_picks_the_gpu_build_where_nvidia_smi_is_found(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    system_path = "/usr/local/bin:/usr/bin:/bin"
    if shutil.which("nvidia-smi", path=system_path):
        pytest.skip("this machine has nvidia-smi: the CPU default cannot be shown here")
    assert "-r requirements-gpu.lock" in make_dry_run(tmp_path, path=f"{bin_dir}:{system_path}")
    assert "-r requirements.lock" in make_dry_run(tmp_path, path=system_path)
