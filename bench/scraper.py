"""Scrapes pgagroal's metrics port every second during a run, as a
Prometheus server would (more often than its default 15 s), so that the
cost of serving scrapes is part of what the metrics workload measures."""

import threading
import urllib.request


class Scraper:
    def __init__(self, port, every=1.0):
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.every = every
        self.done = threading.Event()
        self.ok = 0
        self.failed = 0
        self.last_error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    body = r.read()
                if r.status == 200 and b"pgagroal_state" in body:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.last_error = f"status {r.status}"
            except Exception as e:  # counted, reported by the harness
                self.failed += 1
                self.last_error = f"{type(e).__name__}: {e}"

    def finish(self):
        """Stop; returns how many scrapes succeeded and failed."""
        self.done.set()
        self.thread.join(timeout=10)
        return {"ok": self.ok, "failed": self.failed, "last_error": self.last_error}
