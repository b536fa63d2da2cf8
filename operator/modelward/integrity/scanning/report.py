"""Values the scanner returns: findings, per-file results, the whole report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Verdict = Literal["clean", "unsafe", "error"]

#: Every rule the scanner can report, with what it means (docs/integrity.md lists them).
RULES: Final[dict[str, str]] = {
    "dangerous-global": "pickle imports a known code-execution gadget",
    "unknown-global": "pickle imports a callable that is not on the allowlist",
    "dotted-global": "pickle global uses dotted attribute traversal",
    "computed-global": "STACK_GLOBAL operands are not constant strings",
    "extension-global": "pickle uses the copyreg extension registry (EXT opcodes)",
    "computed-callable": "pickle calls something that is not an imported global",
    "global-state": "pickle sets state (BUILD) on an imported global",
    "trusted-type-misuse": "pickle calls a trusted-profile class or stored function",
    "malformed-pickle": "pickle stream is truncated, invalid or inconsistent",
    "trailing-data": "data after the end of the pickle stream",
    "archive-malformed": "archive is corrupt, has bad CRCs or inconsistent names",
    "archive-bomb": "archive expands beyond the scanner's limits",
    "archive-unscannable": "compressed/archived with a format the scanner cannot open",
    "nesting-too-deep": "archives or pickles nested deeper than the scanner's limit",
    "numpy-object-array": "NumPy array of Python objects (loading requires pickle)",
    "numpy-malformed": "NumPy file header or size is inconsistent",
    "onnx-external-data": "ONNX external data escapes the model directory",
    "onnx-custom-domain": "ONNX operator from a custom domain (needs a native library)",
    "onnx-malformed": "ONNX protobuf cannot be parsed",
    "safetensors-malformed": "safetensors header is invalid",
    "gguf-malformed": "GGUF header, metadata or tensor table is invalid",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason a file is unsafe: where (file, archive member, byte offset), what, why."""

    path: str
    rule: str
    message: str
    member: str | None = None
    offset: int | None = None
    global_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("path", self.path),
                ("member", self.member),
                ("offset", self.offset),
                ("rule", self.rule),
                ("global", self.global_name),
                ("message", self.message),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class FileScan:
    """The result for one file: its detected format(s), findings, or why it was not scanned."""

    path: str
    format: str
    size: int
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    #: Bytes charged to the file's expansion budget (decompressed or read from members).
    expanded: int = 0


@dataclass(frozen=True)
class ScanReport:
    files: tuple[FileScan, ...] = field(default_factory=tuple)

    @property
    def findings(self) -> list[Finding]:
        return [f for scan in self.files for f in scan.findings]

    @property
    def errors(self) -> list[str]:
        return [f"{s.path}: {s.error}" for s in self.files if s.error]

    @property
    def verdict(self) -> Verdict:
        """Unsafe if anything was found; error if something could not be scanned."""
        if self.findings:
            return "unsafe"
        if self.errors:
            return "error"
        return "clean"

    def counts(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "formats": dict(Counter(s.format for s in self.files)),
            "findings": dict(Counter(f.rule for f in self.findings)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.verdict,
            "summary": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "errors": self.errors,
            "files": [
                {
                    "path": s.path,
                    "format": s.format,
                    "size": s.size,
                    "findings": len(s.findings),
                    "expanded": s.expanded,
                    **({"error": s.error} if s.error else {}),
                }
                for s in self.files
            ],
        }
