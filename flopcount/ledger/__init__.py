"""The SQLite ledger: every charge committed before the work it pays for, crash-safe, shared
by processes. Knows nothing of models or plans: it stores FLOPs, steps and sessions."""

from flopcount.ledger.errors import BudgetExceeded
from flopcount.ledger.ledger import Ledger
from flopcount.ledger.records import Charge, ExperimentUsage, LedgerSnapshot, Session
from flopcount.ledger.sqlite_file import LedgerError

__all__ = ["BudgetExceeded", "Charge", "ExperimentUsage", "Ledger", "LedgerError", "LedgerSnapshot", "Session"]
