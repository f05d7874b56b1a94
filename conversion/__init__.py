"""Checkpoint converters into tritonvision folders; see `__main__.py` for the command line and its registry."""

from .folder_writer import ConversionError, VerificationError, verify_then_write

__all__ = ["ConversionError", "VerificationError", "verify_then_write"]
