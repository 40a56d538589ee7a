"""Render the dashboard as an ``xlsx`` workbook or a ``pdf`` report, loading the libraries on demand.

The report libraries (XlsxWriter, reportlab) are the optional extra ``reports``
(``pip install 'analytics-dashboard[reports]'``). They are imported here, the first time a report
is rendered, and never at start-up: the serving process does not pay their memory until a report
is asked for. Without the extra, :func:`render` raises :class:`ReportsExtraMissing` (the API
answers 501 with its message).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from .figures import Row

EXTRA = "reports"
INSTALL_HINT = f"pip install 'analytics-dashboard[{EXTRA}]'"
# The module that renders each format, and the top-level packages of the extra it needs.
RENDERERS = {"xlsx": ("exporter.reports.xlsx", ("xlsxwriter",)), "pdf": ("exporter.reports.pdf", ("reportlab",))}
CONTENT_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 "pdf": "application/pdf"}


class ReportsExtraMissing(RuntimeError):
    """A report format needs a library of the optional extra ``reports``, which is not installed."""

    def __init__(self, form: str, package: str) -> None:
        super().__init__(f"the {form} format needs {package}, part of the optional extra '{EXTRA}' that is not "
                         f"installed here: {INSTALL_HINT}")
        self.form = form
        self.package = package


def render(form: str, dashboard: Mapping[str, Any], rows: Iterable[Row]) -> bytes:
    """The dashboard (and its tidy rows) as ``form`` (``xlsx`` or ``pdf``)."""
    module_name, packages = RENDERERS[form]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".", 1)[0]
        if missing not in packages:
            raise
        raise ReportsExtraMissing(form, missing) from None
    return module.render(dashboard, rows)
