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
    return {"versions": versions, "platform": platform.platform(), "cpu": cpu_model()}


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
