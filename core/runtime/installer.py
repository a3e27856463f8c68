"""Install torch and safetensors into the plugin's own folder with QGIS's interpreter and pip.

One installer for the dialog (``ui/dialogs/install.py``) and ``python -m mmlc install-deps``:

1. :func:`make_plan` finds QGIS's interpreter, probes it (version, pip, numpy, and the packages QGIS
   has already imported), detects an NVIDIA GPU, chooses the CPU or CUDA torch build and estimates
   the download.
2. :func:`run_install` runs ``python -m pip install --target <staging>`` where ``<staging>`` is a
   fresh folder next to the target, with a constraints file pinning numpy and every package QGIS
   has already imported to the version QGIS has; it streams pip's output, reports progress and
   stops pip on cancel. Copies of pinned packages are pruned from the staging folder (QGIS's own
   are used), the result is test-imported by QGIS's interpreter, and only then swapped in for the
   target. Any failure or cancel removes the staging folder and leaves the target as it was.

``--target`` installs never touch QGIS's site-packages, so Debian's "externally managed" guard
does not apply and no ``--break-system-packages`` is needed. pip reads its own configuration and
environment (certificates, proxies, extra indexes), since it runs without ``--isolated``.

Like :mod:`.qgisenv`, this module must not import torch or ``core.errors`` (see there).
"""
from __future__ import annotations

import json
import os
import platform
import queue
import re
import shutil
import subprocess  # nosec B404: runs QGIS's own Python (pip, checks) with argv lists, never a shell
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import qgisenv

#: What mmlc needs at run time, kept in step with requirements.txt.
TORCH_REQUIREMENT = "torch==2.13.0"
OTHER_REQUIREMENTS = ("safetensors>=0.4",)
REQUIREMENTS = (TORCH_REQUIREMENT, *OTHER_REQUIREMENTS)

PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYPI_INDEX = "https://pypi.org/simple"
#: CUDA builds published for the pinned torch release (update together with TORCH_REQUIREMENT).
CUDA_BUILDS: tuple[tuple[int, int], ...] = ((12, 6), (12, 8), (13, 0))

#: Documented download estimates in MB (torch wheel + its dependencies), used when no local wheel
#: tells the real size; see docs/install.md for where the figures come from.
SIZE_ESTIMATES_MB = {
    ("Linux", "cpu"): 205, ("Windows", "cpu"): 130, ("Darwin", "cpu"): 85,
    ("Linux", "cuda"): 3300, ("Windows", "cuda"): 2900,
}
DEPENDENCY_MB = 14  # sympy, networkx, jinja2, fsspec, filelock, typing-extensions, setuptools, safetensors
#: Free space asked for, as a multiple of the download: the download itself plus the unpacked
#: packages (torch 2.13.0+cpu: a 183 MiB wheel, 878 MB installed with its dependencies and .pyc).
DISK_FACTOR = 6.0

LOG_NAME = "install-{tag}.log"


class InstallError(Exception):
    """The install could not be done; the message says why and what to do. The target folder is
    as it was before. (Not a ``core.errors.MmlcError``: that module imports torch.)"""

    exit_code = 5


class InstallCancelled(InstallError):
    """The user cancelled; the staging folder was removed and the target is as it was."""

    exit_code = 130


# -- probing QGIS's interpreter --------------------------------------------------------------------
# Runs inside QGIS's interpreter (any Python >= 3.8, so no newer syntax). stdin: a JSON list of
# module names already imported by the calling QGIS (empty for the CLI, which imports qgis.core
# itself to see what QGIS loads). Prints one JSON object.
_PROBE = r"""
import json, sys
extra = json.loads(sys.stdin.read() or "[]")
with_qgis = "--with-qgis" in sys.argv
if with_qgis:
    try:
        import qgis.core  # noqa: F401  what QGIS itself imports, for the pins
    except Exception:
        pass
out = {"version": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable,
       "prefix": sys.prefix, "pip": None, "numpy": None, "pins": {}}
try:
    import pip
    out["pip"] = pip.__version__
except Exception:
    pass
try:
    import numpy
    out["numpy"] = numpy.__version__
except Exception:
    pass
import importlib.metadata as md
names = set(m.split(".")[0] for m in list(sys.modules) + list(extra))
names = set(n for n in names if n and not n.startswith("_"))
owners = {}
for dist in md.distributions():
    try:
        dname = dist.metadata["Name"]
        top = dist.read_text("top_level.txt")
        tops = top.split() if top else [str(f).split("/")[0].split(".")[0] for f in (dist.files or [])
                                        if not str(f).startswith("..")]
    except Exception:
        continue
    for t in set(tops):
        if t in names and dname and dist.version:
            owners.setdefault(dname, dist.version)
stdlib = set(getattr(sys, "stdlib_module_names", ()))
out["pins"] = dict((k, v) for k, v in owners.items() if k not in stdlib and k.lower() not in ("pip", "mmlc"))
print(json.dumps(out))
"""


@dataclass
class PythonProbe:
    """What QGIS's interpreter reported about itself."""

    python: str
    version: str
    pip: Optional[str]
    numpy: Optional[str]
    pins: dict[str, str]

    @property
    def tag(self) -> str:
        major, minor = self.version.split(".")[:2]
        return f"py{major}{minor}"


def probe_python(python: str, loaded_modules: Sequence[str] = (), with_qgis: bool = True) -> PythonProbe:
    """Run the probe in ``python``; raises InstallError when the interpreter cannot run."""
    args = [python, "-c", _PROBE] + (["--with-qgis"] if with_qgis else [])
    try:
        res = subprocess.run(args, input=json.dumps(sorted(set(loaded_modules))), capture_output=True,  # nosec B603
                             creationflags=qgisenv.NO_WINDOW,
                             text=True, timeout=180, env=qgisenv._clean_python_env())
    except (OSError, subprocess.SubprocessError) as e:
        raise InstallError(f"could not run QGIS's Python {python}: {e}") from e
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise InstallError(f"QGIS's Python {python} failed to report itself:\n{res.stderr[-2000:]}")
    data = json.loads(lines[-1])
    ours = {_normalise(re.split(r"[<>=!~ ;\[]", r, 1)[0]) for r in REQUIREMENTS}  # what we install is not pinned
    pins = {k: v for k, v in data.get("pins", {}).items() if v and _normalise(k) not in ours}
    if data.get("numpy"):
        pins["numpy"] = data["numpy"]
    return PythonProbe(python, data["version"], data.get("pip"), data.get("numpy"), pins)


# -- choosing the build ---------------------------------------------------------------------------
@dataclass
class Build:
    """The torch build to install: ``cpu`` or ``cuXY`` and the index that serves it."""

    tag: str
    index_url: str

    @property
    def is_cuda(self) -> bool:
        return self.tag.startswith("cu")

    def describe(self) -> str:
        if not self.is_cuda:
            return "CPU build"
        digits = self.tag[2:]
        return f"CUDA {digits[:-1]}.{digits[-1]} build"


def choose_build(gpu: qgisenv.GpuInfo, cpu: bool = False, cuda: Optional[str] = None,
                 system: Optional[str] = None) -> Build:
    """CPU unless an NVIDIA driver is present (or ``cuda`` is asked for): then the newest CUDA
    build the driver supports. ``cuda`` (``"12.6"``) forces that build, ``cpu`` the CPU one."""
    system = system or platform.system()
    if cpu or system == "Darwin":
        return Build("cpu", f"{PYTORCH_INDEX}/cpu")
    wanted: Optional[tuple[int, int]] = None
    if cuda:
        m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", cuda)
        if not m:
            raise InstallError(f"--cuda {cuda!r}: give the CUDA version as X.Y, e.g. 12.6")
        wanted = (int(m.group(1)), int(m.group(2)))
        if wanted not in CUDA_BUILDS:
            known = ", ".join(f"{a}.{b}" for a, b in CUDA_BUILDS)
            raise InstallError(f"torch {TORCH_REQUIREMENT.split('==')[1]} has no CUDA {cuda} build; use one of {known}")
    elif gpu.present and gpu.cuda:
        fitting = [b for b in CUDA_BUILDS if b <= gpu.cuda]
        wanted = max(fitting) if fitting else None
    if wanted is None:
        return Build("cpu", f"{PYTORCH_INDEX}/cpu")
    tag = f"cu{wanted[0]}{wanted[1]}"
    return Build(tag, f"{PYTORCH_INDEX}/{tag}")


def local_torch_wheel(find_links: Sequence[str], tag: str, build: Build) -> Optional[Path]:
    """A torch wheel of the pinned version for this Python and build in a find-links folder."""
    version = TORCH_REQUIREMENT.split("==")[1]
    cp = "cp" + tag[2:]
    for folder in find_links:
        d = Path(folder)
        if not d.is_dir():
            continue
        for whl in sorted(d.glob(f"torch-{version}*-{cp}-*.whl")):
            local = re.match(r"torch-[^-+]+(?:\+([^-]+))?-", whl.name)
            label = local.group(1) if local else None
            if label in (build.tag, None):
                return whl
    return None


def estimate_download(build: Build, find_links: Sequence[str], tag: str,
                      system: Optional[str] = None) -> tuple[int, str]:
    """(bytes, where the figure comes from): a local wheel's real size, else the documented estimate."""
    system = system or platform.system()
    whl = local_torch_wheel(find_links, tag, build)
    if whl is not None:
        return whl.stat().st_size + DEPENDENCY_MB * 2**20, f"size of {whl.name} + ~{DEPENDENCY_MB} MB of dependencies"
    kind = "cuda" if build.is_cuda else "cpu"
    mb = SIZE_ESTIMATES_MB.get((system, kind), SIZE_ESTIMATES_MB[("Linux", kind)])
    return mb * 2**20, "estimate, see docs/install.md"


# -- the plan -------------------------------------------------------------------------------------
@dataclass
class InstallPlan:
    """Everything an install will do, shown to the user before it starts."""

    python: str
    probe: PythonProbe
    profile: Path
    target: Path
    gpu: qgisenv.GpuInfo
    build: Build
    index_url: Optional[str]
    extra_index_urls: list[str]
    find_links: list[str]
    no_index: bool
    download_bytes: int
    size_source: str
    requirements: list[str] = field(default_factory=lambda: list(REQUIREMENTS))
    pip_runner: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.target.parent / LOG_NAME.format(tag=self.target.name)

    def constraints_text(self) -> str:
        """pip constraints: each package QGIS has already imported (numpy first) at its version."""
        lines = ["# Packages QGIS's Python already has loaded: never replace them."]
        for name in sorted(self.probe.pins, key=lambda n: (n.lower() != "numpy", n.lower())):
            lines.append(f"{name}=={self.probe.pins[name]}")
        return "\n".join(lines) + "\n"

    def pip_args(self, staging: Path, constraints: Path) -> list[str]:
        """The full pip command line for an install into ``staging``."""
        args = [*self.pip_runner, "install", "--target", str(staging), "--constraint", str(constraints),
                "--only-binary=:all:", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
        if self.no_index:
            args.append("--no-index")
        elif self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for folder in self.find_links:
            args += ["--find-links", folder]
        return args + list(self.requirements)

    def _pins_summary(self, shown: int = 6) -> str:
        names = sorted(self.probe.pins, key=lambda n: (n.lower() != "numpy", n.lower()))
        text = ", ".join(f"{n} {self.probe.pins[n]}" for n in names[:shown]) or "nothing"
        return text + (f" and {len(names) - shown} more (all in the log)" if len(names) > shown else "")

    def describe(self) -> str:
        """Plain-words summary: interpreter, GPU, build, size, target, sources."""
        mb = self.download_bytes / 2**20
        size = f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"
        source = ("local folders only: " + ", ".join(self.find_links)) if self.no_index else \
            (self.index_url or "pip's configured index") + ("".join(f" + {u}" for u in self.extra_index_urls)) + \
            ("".join(f" + {d}" for d in self.find_links))
        pip = f"pip {self.probe.pip}" if self.probe.pip else "pip from a wheel in the wheel folder"
        return "\n".join([
            f"QGIS's Python: {self.python} ({self.probe.version}, {pip})",
            f"GPU: {self.gpu.describe()}",
            f"Build: {' + '.join(self.requirements)}, {self.build.describe()}",
            f"Download: about {size} ({self.size_source})",
            f"From: {source}",
            f"Into: {self.target}",
            f"Kept as QGIS has them: {self._pins_summary()}",
        ])


def _pip_runner(python: str, probe: PythonProbe, find_links: Sequence[str]) -> list[str]:
    """``python -m pip``, or, when QGIS's Python has no pip, pip run from a pip wheel found in a
    find-links folder (a wheel is importable as a zip, and pip runs from it)."""
    if probe.pip:
        return [python, "-m", "pip"]
    for folder in find_links:
        wheels = sorted(Path(folder).glob("pip-*-py3-none-any.whl")) if Path(folder).is_dir() else []
        if wheels:
            return [python, str(wheels[-1] / "pip")]
    raise InstallError(
        f"QGIS's Python ({python}) has no pip. Install it (Debian/Ubuntu: `sudo apt install python3-pip`; "
        "OSGeo4W: the python3-pip package in the OSGeo4W setup), or put a pip wheel "
        "(pip-*-py3-none-any.whl) in the folder given as the local wheel folder and try again.")


def make_plan(profile: Path, *, python: Optional[str] = None, cpu: bool = False, cuda: Optional[str] = None,
              index_url: Optional[str] = None, find_links: Sequence[str] = (), no_index: bool = False,
              loaded_modules: Sequence[str] = (), with_qgis: bool = True,
              gpu: Optional[qgisenv.GpuInfo] = None) -> InstallPlan:
    """Probe QGIS's Python and the GPU and decide what to install where (nothing is changed)."""
    if cpu and cuda:
        raise InstallError("choose either --cpu or --cuda X.Y, not both")
    if python is None:
        try:
            python = qgisenv.find_qgis_python()
        except FileNotFoundError as e:
            raise InstallError(str(e)) from e
    probe = probe_python(python, loaded_modules, with_qgis)
    gpu = qgisenv.detect_gpu() if gpu is None else gpu
    build = choose_build(gpu, cpu=cpu, cuda=cuda)
    links = [str(Path(f).expanduser().resolve()) for f in find_links]
    missing = [f for f in links if not Path(f).is_dir()]
    if missing:
        raise InstallError(f"local wheel folder not found: {', '.join(missing)}")
    if no_index and not links:
        raise InstallError("--no-index needs at least one --find-links folder with the wheels")
    extra: list[str] = []
    if not index_url and not no_index:
        index_url, extra = build.index_url, [PYPI_INDEX]
    size, source = estimate_download(build, links, probe.tag)
    return InstallPlan(
        python=python, probe=probe, profile=Path(profile), target=qgisenv.deps_dir(Path(profile), probe.tag),
        gpu=gpu, build=build, index_url=index_url, extra_index_urls=extra, find_links=links, no_index=no_index,
        download_bytes=size, size_source=source, pip_runner=_pip_runner(python, probe, links))


# -- running --------------------------------------------------------------------------------------
@dataclass
class InstallResult:
    """A finished install: where, what, how long, and whether QGIS must restart."""

    target: Path
    packages: list[str]
    torch_version: str
    cuda_available: bool
    seconds: float
    log_path: Path
    restart_needed: bool = False


def folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def installed_packages(folder: Path) -> list[str]:
    """``name version`` of each distribution in a --target folder (from its .dist-info names)."""
    out = []
    if Path(folder).is_dir():
        for d in sorted(Path(folder).glob("*.dist-info")):
            name, _, version = d.name[: -len(".dist-info")].partition("-")
            out.append(f"{name} {version}")
    return out


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def prune_provided(staging: Path, pins: dict[str, str]) -> list[str]:
    """Delete from ``staging`` the distributions QGIS already provides at the pinned version (pip's
    ``--target`` installs reinstall them): QGIS's own copy stays the one imported. Returns names."""
    wanted = {_normalise(k): v for k, v in pins.items()}
    removed = []
    for info in sorted(staging.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        if wanted.get(_normalise(name)) != version:
            continue
        record = info / "RECORD"
        paths = [line.split(",")[0] for line in record.read_text(encoding="utf-8").splitlines()] \
            if record.is_file() else []
        for rel in paths:
            p = (staging / rel).resolve()
            if staging.resolve() in p.parents and p.is_file():
                p.unlink()
        shutil.rmtree(info, ignore_errors=True)
        for root, _dirs, _files in sorted(os.walk(staging), key=lambda t: -len(t[0])):  # deepest first
            if root != str(staging) and not os.listdir(root):
                os.rmdir(root)
        removed.append(name)
    return removed


_VERIFY = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy, torch, safetensors
inside = lambda m: os.path.realpath(m.__file__).startswith(os.path.realpath(sys.argv[1]))
print(json.dumps({"torch": torch.__version__, "cuda": bool(torch.cuda.is_available()),
                  "torch_inside": inside(torch), "numpy_inside": inside(numpy), "numpy": numpy.__version__}))
"""


class _Progress:
    """Turns pip's output into a fraction: resolving 0-25 %, downloading 25-75 % (by the bytes pip
    has written to its temp folder against the expected download), installing 75-90 %, checking
    90-100 %."""

    def __init__(self, expected_bytes: int, report: Callable[[float], None]) -> None:
        self.expected = max(1, expected_bytes)
        self.report = report
        self.collected = 0
        self.phase = "resolve"
        self.value = 0.0

    def _set(self, value: float) -> None:
        value = max(self.value, min(1.0, value))
        if value > self.value + 1e-4:
            self.value = value
            self.report(value)

    def line(self, text: str) -> None:
        if text.startswith("Collecting") or text.startswith("Processing"):
            self.collected += 1
            self._set(0.25 * (1 - 0.8 ** self.collected))
        elif text.lstrip().startswith("Downloading"):
            self.phase = "download"
            self._set(0.25)
        elif text.startswith("Installing collected packages"):
            self.phase = "install"
            self._set(0.75)
        elif text.startswith("Successfully installed"):
            self._set(0.9)

    def downloaded(self, nbytes: int) -> None:
        if self.phase in ("resolve", "download") and nbytes > 0:
            self._set(0.25 + 0.5 * min(1.0, nbytes / self.expected))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _what_to_do(output: str, plan: InstallPlan) -> str:
    """A hint for the usual failures, from pip's output."""
    low = output.lower()
    if "no space left on device" in low or "errno 28" in low:
        return (f"The disk is full: free at least {plan.download_bytes * DISK_FACTOR / 2**30:.1f} GB on the "
                f"disk of {plan.target.parent} (and of the temp folder) and install again.")
    if any(s in low for s in ("connection refused", "name or service not known", "failed to establish",
                              "temporary failure in name resolution", "network is unreachable",
                              "read timed out", "connecttimeout", "proxyerror")):
        return ("pip could not reach the package index. Check the network or proxy (pip's own settings "
                "apply: pip.conf / pip.ini, HTTPS_PROXY, PIP_CERT), or download the wheels elsewhere and "
                "give their folder as the local wheel folder (--find-links DIR --no-index).")
    if "certificate verify failed" in low or "ssl" in low and "error" in low:
        return ("An HTTPS certificate was refused: set pip's `cert` option (pip.conf / pip.ini or PIP_CERT) "
                "to your organisation's CA bundle, or use a local wheel folder.")
    if "(constraint)" in low and ("conflict" in low or "resolutionimpossible" in low):
        return ("torch needs another version of a package this QGIS has already loaded (see 'The conflict is "
                "caused by' above); it cannot be replaced inside a running QGIS. Close QGIS and run "
                "`python -m mmlc install-deps` with QGIS's Python: it keeps only what QGIS loads at start-up.")
    if "(from versions: none)" in low and not plan.no_index:
        return ("pip found no version at all in the sources: the package index could not be reached (network, "
                "proxy, firewall: pip's own settings apply, pip.conf / pip.ini, HTTPS_PROXY, PIP_CERT) or the "
                "index URL is wrong. Offline, give a folder of downloaded wheels (--find-links DIR --no-index).")
    if "no matching distribution" in low or "could not find a version" in low or "resolutionimpossible" in low:
        return ("pip found no fitting wheel for this Python/platform in the given sources: check the index "
                "URL or that the wheel folder has wheels for this Python (see the log), or choose the CPU build.")
    return "See the log above; the folder was left as it was. Run Diagnostics and attach it to a bug report."


def run_install(plan: InstallPlan, on_line: Callable[[str], None] = lambda s: None,
                on_progress: Callable[[float], None] = lambda f: None,
                cancelled: Callable[[], bool] = lambda: False) -> InstallResult:
    """Install per ``plan``; the target folder changes only if everything succeeded.

    Raises InstallCancelled when ``cancelled()`` turns true (pip is stopped), InstallError on any
    failure, each time after removing the staging folder.
    """
    started = time.monotonic()
    base = plan.target.parent
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InstallError(f"cannot create {base}: {e}. Check the QGIS profile folder is writable.") from e
    free = shutil.disk_usage(base).free
    need = int(plan.download_bytes * DISK_FACTOR)
    if free < need:
        message = (f"not enough free disk space in {base}: {free / 2**30:.1f} GB free, about "
                   f"{need / 2**30:.1f} GB needed. Free some space and install again.")
        plan.log_path.write_text(f"{plan.describe()}\nFAILED: {message}\n", encoding="utf-8")
        raise InstallError(message)
    log = open(plan.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in finally)
    staging: Optional[Path] = Path(tempfile.mkdtemp(prefix=f"{plan.target.name}.staging-", dir=base))
    pip_tmp = Path(tempfile.mkdtemp(prefix=f"{plan.target.name}.pip-tmp-", dir=base))
    constraints = pip_tmp / "constraints.txt"
    progress = _Progress(plan.download_bytes, on_progress)
    output: list[str] = []

    def emit(text: str) -> None:
        output.append(text)
        log.write(text + "\n")
        log.flush()
        on_line(text)

    try:
        constraints.write_text(plan.constraints_text(), encoding="utf-8")
        emit(f"mmlc dependency install, {time.strftime('%Y-%m-%d %H:%M:%S')}")
        emit(plan.describe())
        args = plan.pip_args(staging, constraints)
        emit("$ " + subprocess.list2cmdline(args))
        emit("constraints:\n" + plan.constraints_text().rstrip())
        env = qgisenv._clean_python_env()
        env.update(TMPDIR=str(pip_tmp), TMP=str(pip_tmp), TEMP=str(pip_tmp), PYTHONUNBUFFERED="1")
        code = _run_streaming(args, env, emit, progress, pip_tmp, cancelled)
        if code != 0:
            raise InstallError(f"pip failed (exit code {code}). {_what_to_do(chr(10).join(output[-80:]), plan)}")
        removed = prune_provided(staging, plan.probe.pins)
        if removed:
            emit("kept QGIS's own copies of: " + ", ".join(removed))
        if cancelled():
            raise InstallCancelled("cancelled; nothing was changed")
        emit("checking that QGIS's Python imports torch from the new folder...")
        check = _verify(plan.python, staging)
        emit(f"torch {check['torch']} (CUDA available: {check['cuda']}), numpy {check['numpy']} from QGIS")
        progress._set(0.97)
        if cancelled():
            raise InstallCancelled("cancelled; nothing was changed")
        _swap_in(staging, plan.target)
        staging = None  # now the target
        progress._set(1.0)
        restart = any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        emit(f"installed into {plan.target} in {time.monotonic() - started:.0f} s")
        return InstallResult(plan.target, installed_packages(plan.target), check["torch"], check["cuda"],
                             time.monotonic() - started, plan.log_path, restart)
    except InstallError as e:
        emit(f"FAILED: {e}" if not isinstance(e, InstallCancelled) else f"CANCELLED: {e}")
        raise
    except OSError as e:
        hint = _what_to_do(str(e), plan)
        emit(f"FAILED: {e}")
        raise InstallError(f"{e}. {hint}") from e
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(pip_tmp, ignore_errors=True)
        log.close()


def _run_streaming(args: list[str], env: dict, emit: Callable[[str], None], progress: _Progress,
                   watch: Path, cancelled: Callable[[], bool]) -> int:
    """Run pip, forwarding each output line; poll the cancel flag and the download size."""
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,  # nosec B603
                                creationflags=qgisenv.NO_WINDOW,
                                encoding="utf-8", errors="replace", bufsize=1)
    except OSError as e:
        raise InstallError(f"could not start pip ({args[0]}): {e}") from e
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for raw in proc.stdout:  # type: ignore[union-attr]
            lines.put(raw.rstrip("\r\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    done = False
    last_size = 0.0
    try:
        while not done:
            if cancelled():
                _stop(proc)
                raise InstallCancelled("cancelled; pip was stopped and nothing was changed")
            try:
                text = lines.get(timeout=0.2)
            except queue.Empty:
                text = ""
            if text is None:
                done = True
            elif text:
                emit(text)
                progress.line(text)
            now = time.monotonic()
            if now - last_size > 1.0:
                last_size = now
                progress.downloaded(folder_size(watch))
        return proc.wait()
    finally:
        _stop(proc)
        reader.join(timeout=5)


def _verify(python: str, staging: Path) -> dict:
    """Import torch, safetensors and numpy with QGIS's interpreter, the staging folder first on the path."""
    try:
        res = subprocess.run([python, "-c", _VERIFY, str(staging)], capture_output=True, text=True, timeout=600,  # nosec B603
                             creationflags=qgisenv.NO_WINDOW,
                             env=qgisenv._clean_python_env())
    except (OSError, subprocess.SubprocessError) as e:
        raise InstallError(f"could not test the new packages: {e}") from e
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not rows:
        raise InstallError("the installed torch does not import in QGIS's Python, so it was not kept:\n"
                           + res.stderr[-2000:])
    data = json.loads(rows[-1])
    if not data["torch_inside"]:
        raise InstallError("torch was imported from outside the new folder; a torch elsewhere on QGIS's path "
                           "takes precedence: remove it or run Diagnostics")
    if data["numpy_inside"]:
        raise InstallError("the install brought its own numpy, which would shadow QGIS's: not kept")
    return data


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with renames on one disk; the old folder is deleted last."""
    old = None
    if target.exists():
        old = target.with_name(f"{target.name}.old-{os.getpid()}-{int(time.time())}")
        try:
            os.replace(target, old)
        except OSError as e:
            raise InstallError(f"the current {target} is in use ({e}); restart QGIS and install again before "
                               "running any mmlc algorithm") from e
    try:
        os.replace(staging, target)
    except OSError as e:
        if old is not None:
            os.replace(old, target)
        raise InstallError(f"could not move the new packages into {target}: {e}") from e
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def last_log(profile: Path, tag: Optional[str] = None) -> Optional[str]:
    """Text of the last install log for this Python in ``profile`` (None when there is none)."""
    path = qgisenv.deps_base(profile) / LOG_NAME.format(tag=tag or qgisenv.python_tag())
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
