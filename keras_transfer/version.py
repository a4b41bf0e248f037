"""The package version (read by setup.cfg and the reports without importing TensorFlow)."""

__version__ = "0.1.0"


def environment():
    """What a run's results depend on besides its settings: Python, the libraries' versions, the CPU.

    Written into every report.json, so that a run can be repeated (and a
    timing compared) on the same stack.
    """
    import importlib.metadata
    import platform

    versions = {"python": platform.python_version(), "keras_transfer": __version__}
    for distribution in ("tensorflow", "keras", "keras-hub", "numpy", "ai-edge-litert", "tf-keras",
                         "tensorflow-model-optimization", "scikit-learn"):  # fmt: skip
        try:
            versions[distribution.replace("-", "_")] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"versions": versions, "platform": platform.platform(), "cpu": cpu_model(), "cpu_flags": cpu_flags()}


def cpu_model():
    """The CPU's model name (`AMD EPYC`, from /proc/cpuinfo), else what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


# The instruction sets CPU timings depend on (int8 and bfloat16 kernels above all).
TIMING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimddp")


def cpu_flags():
    """Which of `TIMING_FLAGS` this CPU has (from /proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith(("flags", "Features")):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in TIMING_FLAGS if flag in present]
    except OSError:
        pass
    return []
