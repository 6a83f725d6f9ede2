"""Process-local counters and gauges, rendered in the Prometheus text format for /metrics."""

from __future__ import annotations

import threading
from collections import defaultdict

Labels = tuple[tuple[str, str], ...]


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._help: dict[str, str] = {}

    def inc(self, name: str, value: float = 1.0, help: str = "", **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + value
            if help:
                self._help.setdefault(name, help)

    def set(self, name: str, value: float, help: str = "", **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._gauges[name][key] = value
            if help:
                self._help.setdefault(name, help)

    def total(self, name: str, **labels: str) -> float:
        """Sum of a counter over the series whose labels include ``labels``."""
        want = set(labels.items())
        with self._lock:
            series = dict(self._counters.get(name, {})) or dict(self._gauges.get(name, {}))
        return sum(v for k, v in series.items() if want <= set(k))

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            out = {name: sum(s.values()) for name, s in self._counters.items()}
            out.update({name: sum(s.values()) for name, s in self._gauges.items()})
        return out

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name in sorted(table):
                    if name in self._help:
                        lines.append(f"# HELP {name} {self._help[name]}")
                    lines.append(f"# TYPE {name} {kind}")
                    for labels, value in sorted(table[name].items()):
                        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                        lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


METRICS = Metrics()
