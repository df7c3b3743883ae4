"""Compile and load the small C kernels shipped with probgen, once per machine.

A kernel's C source lives in the package next to the module that uses it. On first use it is
compiled with the machine's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) for the CPU it
runs on (``-O3 -march=native``), into a cache folder, and loaded with :mod:`ctypes`. The library's
name carries a hash of the source, the compiler's version, the flags and the CPU model, so an
edited source, another compiler or another machine sharing the folder gets its own build. A build
is written under a temporary name and renamed into place, so that processes starting together
(a multi-process launch, parallel test workers) never load a half-written file.

Where there is no compiler, the build fails, or ``PROBGEN_NATIVE=0`` is set, :func:`load_library`
returns ``None`` and the callers keep their PyTorch path; :func:`status` says which happened.

Environment:
    ``PROBGEN_NATIVE``: ``0`` turns the compiled kernels off.
    ``PROBGEN_CACHE_DIR``: where builds go (default ``$XDG_CACHE_HOME/probgen``, else
    ``~/.cache/probgen``).
    ``CC``: the C compiler to use.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["cache_dir", "load_library", "status"]

FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-pthread")
_COMPILE_TIMEOUT_S = 120
_status: dict[str, str] = {}


def cache_dir() -> Path:
    """The folder of compiled kernels (``PROBGEN_CACHE_DIR`` or the user's cache folder)."""
    explicit = os.environ.get("PROBGEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "probgen"


def status() -> dict[str, str]:
    """For each kernel source asked for in this process: the library loaded, or why none was."""
    return dict(_status)


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_identity() -> str:
    """The CPU model and its feature flags (what -march=native compiles for)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [
                line
                for line in f
                if line.startswith(("model name", "flags", "Features", "CPU part"))
            ]
        return "".join(dict.fromkeys(lines))
    except OSError:
        return platform.processor()


def _version(cc: str) -> str:
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({err})"
    return done.stdout


def _build(cc: str, source: Path, target: Path) -> str | None:
    """Compile ``source`` into ``target``; ``None`` on success, else the compiler's complaint."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp", dir=target.parent)
    except OSError as err:  # e.g. a cache folder that cannot be made or written
        return str(err)
    os.close(fd)
    try:
        done = subprocess.run(
            [cc, *FLAGS, str(source), "-o", tmp, "-lm"],
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_S,
        )
        if done.returncode != 0:
            return done.stderr.strip()[-2000:] or f"{cc} exited with {done.returncode}"
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_library(source: Path) -> ctypes.CDLL | None:
    """The compiled library of the C file ``source``, built on first use; ``None`` if unavailable.

    Compiling takes 1–2 s for probgen's Normal kernel and happens once per machine (per
    source, compiler and CPU); later calls in any process load the cached build.
    """
    key = str(source)
    if os.environ.get("PROBGEN_NATIVE", "1") == "0":
        _status[key] = "turned off (PROBGEN_NATIVE=0)"
        return None
    if sys.platform == "win32":
        _status[key] = "not built on Windows"
        return None
    cc = _compiler()
    if cc is None:
        _status[key] = "no C compiler found (set CC)"
        return None
    version = _version(cc)
    digest = hashlib.sha256()
    for part in (source.read_bytes(), version.encode(), " ".join(FLAGS).encode()):
        digest.update(part)
    digest.update(f"{platform.machine()}\n{_cpu_identity()}".encode())
    target = cache_dir() / f"{source.stem}-{digest.hexdigest()[:20]}.so"
    for attempt in range(2):
        if not target.exists() or attempt:
            error = _build(cc, source, target)
            if error is not None:
                _status[key] = f"build failed with {cc}: {error}"
                return None
        try:
            library = ctypes.CDLL(str(target))
        except OSError as err:  # a damaged cached file: build it again once
            _status[key] = f"could not load {target}: {err}"
            continue
        compiler = version.strip().splitlines()[0] if version.strip() else cc
        _status[key] = f"loaded {target} (built by {compiler}, {' '.join(FLAGS[:2])})"
        return library
    return None
