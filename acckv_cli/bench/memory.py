"""Peak memory of one phase of a bench: the process's RSS high-water mark above its RSS at the start."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path


def _status_kb(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        found = re.search(rf"{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text())
        return int(found.group(1)) if found else None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak resident memory of this process during a `with` block, in MB above the RSS at its start.

    Exact kernel high-water mark (`VmHWM` after a reset via /proc/self/clear_refs) where Linux allows it,
    otherwise a background thread sampling `VmRSS` every 2 ms (may miss spikes shorter than that).
    """

    method = "unknown"

    def __enter__(self) -> "PeakRSS":
        self.before_kb = _status_kb("VmRSS") or 0
        self._exact = _reset_hwm() and _status_kb("VmHWM") is not None
        self._peak_kb = self.before_kb
        self._stop = threading.Event()
        if not self._exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        PeakRSS.method = "VmHWM reset via /proc/self/clear_refs" if self._exact else "VmRSS sampled every 2 ms"
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak_kb = max(self._peak_kb, _status_kb("VmRSS") or 0)

    def __exit__(self, *exc) -> None:
        if self._exact:
            self._peak_kb = _status_kb("VmHWM") or self.before_kb
        else:
            self._stop.set()
            self._thread.join()
        self.peak_mb = max(0.0, (self._peak_kb - self.before_kb) / 1024)
        self.before_mb = self.before_kb / 1024
