"""The versioned artifact directory: write atomically, load, erase."""

from engine.bundle.bundle import Bundle, UnknownCustomer
from engine.bundle.writer import BundleError, BundleWriter

__all__ = ["Bundle", "BundleError", "BundleWriter", "UnknownCustomer"]
