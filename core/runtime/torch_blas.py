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
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import numpy as np

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


_RELA = [("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")]
_SYM = [("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"), ("size", "<u8")]


@dataclass
class PltTable:
    """The PLT slots of one library whose C-named function the library defines itself.

    ``offsets[i]`` is the slot's offset and ``values[i]`` the own definition's offset from the load
    address; names are decoded on demand (a libtorch_cpu has ~20,000 such slots, ~100 of them BLAS).
    Held as numpy arrays: a loop over the slots in Python cost 0.1 s per process from the CLI and
    0.3 s inside qgis_process (docs/benchmarks.md)."""

    offsets: "np.ndarray"
    values: "np.ndarray"
    name_at: "np.ndarray"  # offsets of the names in ``strtab``
    strtab: bytes

    def __len__(self) -> int:
        return len(self.offsets)

    def name(self, i: int) -> str:
        at = int(self.name_at[i])
        return self.strtab[at:self.strtab.index(b"\0", at)].decode(errors="replace")

    def find(self, name: str) -> Optional[int]:
        """Index of the slot of ``name`` (None when the library has none of its own)."""
        return next((i for i in range(len(self)) if self.name(i) == name), None)


def _plt_table(path: str) -> PltTable:
    """The PLT slots of the library at ``path`` (its file's ``.rela.plt`` and ``.dynsym``) whose
    C-named function the library defines itself."""
    import numpy as np

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
    rela = np.frombuffer(table, np.dtype(_RELA), count=len(table) // 24)
    rela = rela[(rela["info"] & 0xFFFFFFFF) == slot_type]
    syms = np.frombuffer(symtab, np.dtype(_SYM), count=len(symtab) // 24)
    sym_index = (rela["info"] >> np.uint64(32)).astype(np.intp)
    if len(sym_index) and sym_index.max() >= len(syms):
        raise ValueError("a relocation names a symbol past .dynsym")
    sym = syms[sym_index]
    text = np.frombuffer(strtab + b"\0\0", np.uint8)
    at = sym["name"].astype(np.intp)
    cxx = (text[at] == ord("_")) & (text[at + 1] == ord("Z"))
    # undefined here, not a plain function (IFUNCs resolve elsewhere), or C++: left out
    keep = (sym["shndx"] != 0) & (sym["value"] != 0) & ((sym["info"] & 0xF) == _STT_FUNC) & ~cxx
    return PltTable(rela["offset"][keep], sym["value"][keep], at[keep], strtab)


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
    table = _plt_table(path)
    if not len(table):
        return
    import numpy as np

    libc = ctypes.CDLL(None)
    own = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)  # the loaded copy; dlsym searches it first
    base = ctypes.cast(getattr(own, table.name(0)), ctypes.c_void_p).value - int(table.values[0])
    # the load address must explain every definition dlsym sees, or nothing is written
    for i in range(0, len(table), max(len(table) // 16, 1)):
        name = table.name(i)
        if ctypes.cast(getattr(own, name), ctypes.c_void_p).value != base + int(table.values[i]):
            res.skipped = f"load address check failed at {name}"
            return
    slots = table.offsets.astype(np.int64) + base
    targets = table.values.astype(np.int64) + base
    ranges = np.array(_writable_ranges(), dtype=np.int64).reshape(-1, 2)
    ranges = ranges[np.argsort(ranges[:, 0])]
    where = np.searchsorted(ranges[:, 0], slots, side="right") - 1
    inside = (where >= 0) & (slots + 8 <= ranges[np.maximum(where, 0), 1])
    interposers: dict[str, None] = {}
    for i in np.flatnonzero(inside & (_read_slots(slots, where, inside) != targets)):
        slot, target = int(slots[i]), int(targets[i])
        current = ctypes.c_void_p.from_address(slot).value
        if current is not None:  # None: never bound (cannot happen after RTLD_NOW; patched anyway)
            interposers[_library_of(libc, current)] = None
        ctypes.c_void_p.from_address(slot).value = target
        res.rebound.append(table.name(int(i)))
    res.interposers = list(interposers)


def _read_slots(slots: "np.ndarray", where: "np.ndarray", inside: "np.ndarray") -> "np.ndarray":
    """The pointers stored at ``slots`` (-1 where not ``inside`` a writable mapping): one copy of
    the span each mapping's slots cover (``where``: the mapping's index), never past the mapping."""
    import numpy as np

    out = np.full(len(slots), -1, dtype=np.int64)
    for mapping in np.unique(where[inside]):
        pick = np.flatnonzero(inside & (where == mapping))
        lo, hi = int(slots[pick].min()), int(slots[pick].max()) + 8
        words = np.frombuffer(ctypes.string_at(lo, hi - lo), dtype=np.uint64)
        rel = slots[pick] - lo
        aligned = rel % 8 == 0
        out[pick[aligned]] = words[rel[aligned] // 8].astype(np.int64)
        for i in pick[~aligned]:  # an unaligned slot (not seen in practice): read on its own
            out[i] = ctypes.c_void_p.from_address(int(slots[i])).value or 0
    return out
