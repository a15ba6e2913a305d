"""How much feedback a server accepts: per client over a day, and in total for a dataset.

Feedback photos go into the folder that retraining reads, so a server that takes them from the
network bounds them: each client (its address) may send `per_client` photos and `per_client_bytes`
in any 24 hours, and a dataset's feedback folder holds at most `total` photos and `total_bytes`.
A label-only call (by image hash) counts as one item for its client.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from core.errors import Busy

DAY_SECONDS = 24 * 3600


class QuotaExceeded(Busy):
    """Feedback over a quota (HTTP 429); the message says which and when it frees up."""


@dataclass
class FeedbackQuota:
    per_client: int = 100
    per_client_bytes: int = 200 * 1024 * 1024
    total: int = 2_000
    total_bytes: int = 2 * 1024 * 1024 * 1024
    window_seconds: float = DAY_SECONDS
    _recent: dict[str, collections.deque] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self, client: str, size: int, kept_count: int, kept_bytes: int, now: float | None = None) -> None:
        """Count one item of `size` bytes from `client`, or raise QuotaExceeded (nothing counted then).

        `kept_count` / `kept_bytes`: what the dataset's feedback folder holds already (photos only; a
        label-only call passes size 0 and is not held against the folder's totals).
        """
        now = time.time() if now is None else now
        if size and kept_count + 1 > self.total:
            raise QuotaExceeded(
                f"the dataset's feedback folder holds {kept_count} photos, its limit ({self.total}); "
                "retrain with them (or remove some) before sending more"
            )
        if size and kept_bytes + size > self.total_bytes:
            raise QuotaExceeded(
                f"the dataset's feedback folder holds {kept_bytes / 1e6:.0f} MB; this photo would pass its "
                f"{self.total_bytes / 1e6:.0f} MB limit"
            )
        with self._lock:
            recent = self._recent.setdefault(client, collections.deque())
            while recent and recent[0][0] <= now - self.window_seconds:
                recent.popleft()
            count, sent = len(recent), sum(item[1] for item in recent)
            wait = (recent[0][0] + self.window_seconds - now) if recent else 0.0
            if count + 1 > self.per_client:
                raise QuotaExceeded(
                    f"{client} sent {count} feedback items in the last 24 hours, the limit per client; "
                    f"the next is accepted in {wait / 60:.0f} min"
                )
            if size and sent + size > self.per_client_bytes:
                raise QuotaExceeded(
                    f"{client} sent {sent / 1e6:.0f} MB of feedback photos in the last 24 hours; this one would "
                    f"pass the {self.per_client_bytes / 1e6:.0f} MB limit per client"
                )
            recent.append((now, size))
