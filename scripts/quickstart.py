"""The README's quick start: cache a slow function in pickle files (the default core)."""

import logging
import time
from datetime import timedelta

from cachier_like import cached

logger = logging.getLogger("quickstart")


@cached(stale_after=timedelta(days=1))
def slow_square(x: int) -> int:
    """Pretend to be expensive."""
    time.sleep(0.5)
    return x * x


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    slow_square.clear_cache()
    start = time.perf_counter()
    first = slow_square(12)
    miss_s = time.perf_counter() - start
    start = time.perf_counter()
    second = slow_square(12)
    hit_s = time.perf_counter() - start
    assert first == second == 144
    logger.info("first call  (computed): %s in %.3f s", first, miss_s)
    logger.info("second call (cached):   %s in %.6f s", second, hit_s)
    logger.info("entries live under %s", slow_square.cache_dpath())
