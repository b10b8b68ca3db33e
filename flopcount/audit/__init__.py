"""The audit of a ledger: a table of every experiment's FLOPs (Markdown, CSV, JSON) and a chart."""

from flopcount.audit.figure_files import save_png_and_pdf
from flopcount.audit.table import AuditReport, AuditRow, audit_report

__all__ = ["AuditReport", "AuditRow", "audit_report", "save_png_and_pdf"]
