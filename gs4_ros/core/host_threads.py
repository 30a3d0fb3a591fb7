"""Cap the thread pools of the host-side BLAS libraries (numpy's, scipy's and OpenCV's
OpenBLAS) that the pipeline's hole fill calls on small matrices.

Why: OpenBLAS starts a pool of workers when imported, and they spin for a while after
every call. The fill makes many small products per keyframe; on the H200 hosts five
threads created at start-up (where numpy's OpenBLAS starts its pool; gdb on a CPU run
finds the first of them in OpenBLAS's blas_thread_server) sat at 50-60% of a core each
through a live run (benchmarks/node_latency.py), and with OpenBLAS on one thread the fill
waited as long (docs/results.md, live-node figures). torch's own CPU threads (OpenMP) are not touched.
"""
from __future__ import annotations

import logging
from typing import List

log = logging.getLogger(__name__)


def limit_host_blas(threads: int) -> List[str]:
    """Limit every loaded BLAS pool to `threads` (<= 0: leave them as they are). Returns the
    libraries limited. Libraries load when imported, so the ones the pipeline uses are
    imported first; threadpoolctl (scikit-learn's) does the per-library calls."""
    if threads <= 0:
        return []
    import cv2  # noqa: F401  (OpenCV's bundled OpenBLAS)
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:   # a ROS install without the pip extras: run, only with idle spinning
        log.warning("threadpoolctl is not installed: host BLAS pools left at their default "
                    "size (pip install threadpoolctl to cap them at host_blas_threads=%d)", threads)
        return []

    threadpool_limits(limits=int(threads), user_api="blas")
    libs = [i["filepath"].rsplit("/", 1)[-1] for i in threadpool_info() if i["user_api"] == "blas"]
    log.debug("host BLAS limited to %d thread(s): %s", threads, ", ".join(libs))
    return libs
