"""Keep PyTorch on its own BLAS when the host process has put another one in the global scope.

Why this exists: on Linux, QGIS (``qgis``, ``qgis_process``) links, through GDAL and armadillo,
the system's BLAS/LAPACK (Debian: OpenBLAS, pthreads build) into its executable's global symbol
scope. PyTorch's wheel (``libtorch_cpu.so``) carries its own BLAS (MKL on x86-64) and exports
its entry points (``sgemm_``, ``sgetrf_``...) without binding its own calls to them, so the
dynamic linker resolves torch's calls to the *first* definition in the process: the system
OpenBLAS. Measured on the 2-core reference machine (docs/benchmarks.md): PRSANet classify took
1.4-1.7x as long under ``qgis_process`` as from the CLI, its model thread doing ~25 % more work
and an OpenBLAS worker thread spinning beside torch's OpenMP threads; single-threading OpenBLAS
removed the spinning but not the slower gemm. The plain ``python -m mmlc`` process loads GDAL's
BLAS privately (``RTLD_LOCAL``), so torch keeps MKL there.

The fix is what linking torch with ``-Bsymbolic`` would have done, for C-named functions only:
every PLT slot of ``libtorch_cpu.so`` whose symbol torch defines itself but which the loader bound
to another library is pointed back at torch's own definition. The ELF tables are read from the
file (section headers), the load address is checked against ``dlsym`` before anything is
written, slots on read-only pages are left alone, and writes are single aligned pointer stores
(atomic on x86-64 and aarch64). C++ names are not touched (libstdc++ template instances that
torch also carries are the same code). Nothing is done outside Linux (Windows DLLs and macOS
two-level namespaces bind per library already) or when ``MMLC_KEEP_TORCH_BLAS_BINDING=1``.
"""
from __future__ import annotations

import ctypes
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Optional

#: Relocation types of PLT slots per ELF machine: x86-64 R_X86_64_JUMP_SLOT, aarch64 R_AARCH64_JUMP_SLOT.
_JUMP_SLOT = {62: 7, 183: 1026}
_STT_FUNC = 2
_SHT_RELA = 4
_SHT_DYNSYM = 11


@dataclass
class Rebinding:
    """What :func:`rebind_torch_blas` found and did (one per process)."""

    library: str = ""             # path of libtorch_cpu.so ("" when not found)
    rebound: list[str] = field(default_factory=list)  # symbols pointed back at torch's own code
    interposers: list[str] = field(default_factory=list)  # libraries they had been bound to
    skipped: str = ""             # why nothing was checked (off, not Linux, unexpected layout)

    def summary(self) -> str:
        if self.skipped:
            return f"torch BLAS binding not checked: {self.skipped}"
        if not self.rebound:
            return "torch uses its own BLAS"
        return (f"{len(self.rebound)} BLAS/LAPACK functions of torch were bound to "
                f"{', '.join(self.interposers)}; pointed back at torch's own")


_result: Optional[Rebinding] = None


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _library_of(libc: ctypes.CDLL, address: int) -> str:
    info = _DlInfo()
    if libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) and info.dli_fname:
        return info.dli_fname.decode(errors="replace")
    return hex(address)


def _loaded_path(fragment: str) -> Optional[str]:
    """Path of the first mapped file whose name contains ``fragment`` (``/proc/self/maps``)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and fragment in os.path.basename(parts[5].strip()):
                    return parts[5].strip()
    except OSError:
        return None
    return None


def _writable_ranges() -> list[tuple[int, int]]:
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            addr, perms = line.split(None, 2)[:2]
            if "w" in perms:
                lo, hi = (int(x, 16) for x in addr.split("-"))
                out.append((lo, hi))
    return out


def _plt_self_bindings(path: str) -> list[tuple[str, int, int]]:
    """[(name, slot offset, own definition offset)] for every PLT slot of the library at ``path``
    whose C-named function the library defines itself (read from the file's ``.rela.plt``)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise ValueError("not a 64-bit little-endian ELF file")
        machine, = struct.unpack_from("<H", head, 18)
        shoff, = struct.unpack_from("<Q", head, 40)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 58)
        f.seek(shoff)
        raw = f.read(shentsize * shnum)
        # (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, ...)
        sections = [struct.unpack_from("<IIQQQQIIQQ", raw, i * shentsize) for i in range(shnum)]

        def read(sec: tuple) -> bytes:
            f.seek(sec[4])
            return f.read(sec[5])

        names = read(sections[shstrndx])
        plt = next(s for s in sections if s[1] == _SHT_RELA and names[s[0]:s[0] + 10] == b".rela.plt\0")
        symtab_sec = sections[plt[6]]
        if symtab_sec[1] != _SHT_DYNSYM:
            raise ValueError(".rela.plt does not refer to .dynsym")
        symtab, strtab, table = read(symtab_sec), read(sections[symtab_sec[6]]), read(plt)
    slot_type = _JUMP_SLOT.get(machine)
    if slot_type is None:
        raise ValueError(f"ELF machine {machine} not handled")
    out = []
    for r_offset, r_info, _ in struct.iter_unpack("<QQq", table):
        if r_info & 0xFFFFFFFF != slot_type:
            continue
        st_name, st_info, _, st_shndx, st_value, _ = struct.unpack_from("<IBBHQQ", symtab, (r_info >> 32) * 24)
        if st_shndx == 0 or st_value == 0 or st_info & 0xF != _STT_FUNC or strtab[st_name:st_name + 2] == b"_Z":
            continue  # undefined here, not a plain function (IFUNCs resolve elsewhere), or C++
        out.append((strtab[st_name:strtab.index(b"\0", st_name)].decode(errors="replace"), r_offset, st_value))
    return out


def rebind_torch_blas() -> Rebinding:
    """Point torch's calls to functions it defines itself back at its own definitions, if the
    process bound them elsewhere (once per process; later calls return the first result).

    Imports torch. Never raises: a layout it does not expect is reported in ``skipped``.
    """
    global _result
    if _result is not None:
        return _result
    res = Rebinding()
    if os.environ.get("MMLC_KEEP_TORCH_BLAS_BINDING") == "1":
        res.skipped = "MMLC_KEEP_TORCH_BLAS_BINDING=1"
    elif not sys.platform.startswith("linux"):
        res.skipped = "not Linux (no global symbol interposition)"
    else:
        try:
            _rebind(res)
        except (OSError, ValueError, StopIteration, struct.error, AttributeError) as e:
            res.skipped = f"unexpected library layout ({e})"
    _result = res
    return res


def _rebind(res: Rebinding) -> None:
    import torch  # noqa: F401  (loads libtorch_cpu.so)

    path = _loaded_path("libtorch_cpu.so")
    if path is None:
        res.skipped = "libtorch_cpu.so is not loaded (torch built differently)"
        return
    res.library = path
    entries = _plt_self_bindings(path)
    if not entries:
        return
    libc = ctypes.CDLL(None)
    own = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)  # the loaded copy; dlsym searches it first
    name0, _, value0 = entries[0]
    base = ctypes.cast(getattr(own, name0), ctypes.c_void_p).value - value0
    # the load address must explain every definition dlsym sees, or nothing is written
    for name, _, value in entries[:: max(len(entries) // 16, 1)]:
        if ctypes.cast(getattr(own, name), ctypes.c_void_p).value != base + value:
            res.skipped = f"load address check failed at {name}"
            return
    writable = _writable_ranges()
    interposers: dict[str, None] = {}
    for name, offset, value in entries:
        slot, target = base + offset, base + value
        current = ctypes.c_void_p.from_address(slot).value
        if current == target or not any(lo <= slot and slot + 8 <= hi for lo, hi in writable):
            continue
        if current is not None:  # None: never bound (cannot happen after RTLD_NOW; patched anyway)
            interposers[_library_of(libc, current)] = None
        ctypes.c_void_p.from_address(slot).value = target
        res.rebound.append(name)
    res.interposers = list(interposers)
