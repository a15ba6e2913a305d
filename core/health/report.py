"""What a health check returns: findings (each with every file involved) and statistics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    """One thing the check found, with every file involved (paths relative to the dataset root)."""

    kind: str
    severity: str  # "error" | "warning" | "info"
    title: str  # one line, with numbers
    detail: str  # why it matters and what to do
    files: list[str]
    groups: list[list[str]] = field(default_factory=list)  # duplicates: files that are the same picture
    captions: dict[str, str] = field(default_factory=dict)  # per file: the reason, its size, its split...

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "files": list(self.files),
            "groups": [list(g) for g in self.groups],
            "captions": dict(self.captions),
        }


@dataclass
class HealthReport:
    """Findings (errors first) and statistics of one dataset."""

    dataset: str
    root: Path
    images: int  # image files scanned (readable or not)
    classes: int
    findings: list[Finding]
    stats: dict[str, Any]
    table: pd.DataFrame | None = field(default=None, repr=False)  # image_table + decoding results

    @property
    def ok(self) -> bool:
        """True when nothing of severity "error" was found."""
        return not any(f.severity == "error" for f in self.findings)

    def by_kind(self, kind: str) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind), None)

    def counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        found = Counter(f.severity for f in self.findings)
        return {s: found.get(s, 0) for s in SEVERITIES}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthReport:
        """A report read back from `to_dict` (without its per-file table)."""
        findings = [
            Finding(
                f["kind"],
                f["severity"],
                f["title"],
                f["detail"],
                list(f.get("files", [])),
                [list(g) for g in f.get("groups", [])],
                dict(f.get("captions", {})),
            )
            for f in data.get("findings", [])
        ]
        return cls(data["dataset"], Path(data["root"]), data["images"], data["classes"], findings, data["stats"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "images": self.images,
            "classes": self.classes,
            "ok": self.ok,
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "stats": self.stats,
        }
