"""The two shapes of progress callback that long operations take (they never know who listens).

  CountCallback(done, total)          one stage: decoding the cache, extracting features
  StageCallback(stage, done, total)   several named stages: imports ("downloading", "unpacking"), health checks

`total` is 0 when it is not known yet. The CLI draws them as bars, the pages as st.progress, the
background jobs write them to their status.
"""

from __future__ import annotations

from collections.abc import Callable

CountCallback = Callable[[int, int], None]
StageCallback = Callable[[str, int, int], None]
