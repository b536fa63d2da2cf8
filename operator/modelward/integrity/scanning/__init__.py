"""Payload scanning of model files: pickle, PyTorch (zip, legacy, tar), NumPy, joblib, ONNX.

Principles: the format is decided from content; pickles are walked opcode by opcode with a
stack and memo model; globals are checked against an allowlist; whatever cannot be parsed is
a finding; nothing is ever loaded, unpickled or executed.
"""

from modelward.integrity.scanning.context import ScanPolicy
from modelward.integrity.scanning.report import RULES, FileScan, Finding, ScanReport
from modelward.integrity.scanning.scanner import scan_bytes, scan_file, scan_paths

__all__ = [
    "RULES",
    "FileScan",
    "Finding",
    "ScanPolicy",
    "ScanReport",
    "scan_bytes",
    "scan_file",
    "scan_paths",
]
