"""hopscope.analysis: polars batch jobs that find bottlenecks and recommend what to change.

Importing the package before polars keeps polars' allocator from handing freed memory back to
the kernel at once (:data:`ALLOCATOR_CONF`), unless ``_RJEM_MALLOC_CONF`` is already set.
"""

import os
import sys
from typing import Final

# polars' jemalloc reads its options from this variable once, when polars loads; polars
# (2.1) puts its own defaults before the variable's value, and the later options win.
ALLOCATOR_ENV: Final = "_RJEM_MALLOC_CONF"
# The jobs allocate and drop frames of hundreds of megabytes one after the other; with
# polars' default decay (500 ms dirty, 1 s muzzy) the freed pages go back to the kernel and
# are faulted in again, zeroed, by the next frame: at 10M spans half the report's CPU was
# system time. Kept 30 s, the next frame reuses them. `hopscope analyze` imports this
# package before polars.
ALLOCATOR_CONF: Final = "dirty_decay_ms:30000,muzzy_decay_ms:30000"

if "polars" not in sys.modules:
    os.environ.setdefault(ALLOCATOR_ENV, ALLOCATOR_CONF)

__all__ = ["ALLOCATOR_CONF", "ALLOCATOR_ENV"]
