"""Error analysis: the token audit table (``table``), contrastive explanations (``contrast``), the
corpus audit behind ``leafx-widgets audit`` (``corpus``), its HTML report (``report``) and the
detection-power measurement (``detection``)."""
from __future__ import annotations

from .contrast import Contrast, contrast  # noqa: F401
from .table import COLUMNS, ERRORS, FLAG_THRESHOLD, audit, parse_reference  # noqa: F401
