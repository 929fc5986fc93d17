"""Report assembly and writers (JSON, HTML). Importing this package does not import matplotlib."""

from segdoctor.report.model import Report

__all__ = ["Report"]
