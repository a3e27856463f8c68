"""``python -m mmlc.core.torchrun ...``: ``torchrun`` that works on every supported torch.

It takes torchrun's arguments (``--standalone --nproc_per_node=N -m mmlc train ...``). On a torch
whose TCP store has no libuv back end (Debian's ``python3-torch`` 2.6), torch's own launcher
fails: its rendezvous builds the store with libuv, torch's default, whatever ``USE_LIBUV`` says.
Here the launcher's stores default to the classic back end instead
(:func:`mmlc.core.fitting.ddp.stores_without_libuv`), and ``USE_LIBUV=0`` reaches the workers, whose
:func:`mmlc.core.fitting.ddp.setup` does the same.
On a torch with libuv this is exactly ``torchrun``.
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from .fitting.ddp import store_environment, stores_without_libuv, torch_has_libuv


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run torchrun with ``argv`` (default: this process's arguments)."""
    os.environ.update(store_environment())
    if not torch_has_libuv():
        stores_without_libuv()
    from torch.distributed.run import main as torchrun_main

    torchrun_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
