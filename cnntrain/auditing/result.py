"""What an audit found, in counts, and where it wrote it: the command's summary line and the page's headline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AuditResult:
    """What an audit found and where it wrote it."""

    folder: Path
    images: int
    label_issues: int
    duplicates: int
    leaks: int
    outliers: int
    dropped: int
    relabelled: int
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)
    train_command: str = ""
    image_dir: Path | None = None  # the folder the cleaned label file's paths are relative to

    def line(self) -> str:
        """The one summary line the command prints."""
        return (
            f"audit: {self.images:,} images, {self.label_issues:,} likely label errors, {self.duplicates:,} duplicate "
            f"pairs ({self.leaks:,} across splits), {self.outliers:,} outliers; the cleaned labels leave out "
            f"{self.dropped:,} and relabel {self.relabelled:,} -> {self.folder / 'audit.html'} ({self.seconds:.1f} s)"
        )
