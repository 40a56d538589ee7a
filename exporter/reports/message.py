"""A scheduled report as an email: the summary (text, with an HTML alternative) and its attachments."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from .config import ReportConfig
from .figures import Row
from .summary import Summary, summarize


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "application/pdf", "text/csv; charset=utf-8"
    data: bytes


# The dashboard in one of the report's formats; the caller's export (json, csv, pdf, xlsx).
Exporter = Callable[[Mapping[str, Any], str], Attachment]
RowsOf = Callable[[Mapping[str, Any]], Iterable[Row]]


def report_email(report: ReportConfig, sender: str, current: Mapping[str, Any], previous: Mapping[str, Any] | None,
                 rows_of: RowsOf, export: Exporter, date: datetime) -> EmailMessage:
    """Report ``report`` over ``current`` (compared with ``previous``, the previous period's
    dashboard, when given), from ``sender`` to the report's recipients, dated ``date``.

    CPU-bound (it renders the attachments): call it in a worker thread from the event loop.
    """
    attachments = [export(current, form) for form in report.formats]
    summary = summarize(report.name, current, rows_of(current),
                        None if previous is None else (previous, rows_of(previous)),
                        [attachment.filename for attachment in attachments])
    return compose(summary, sender, report.recipients, attachments, date)


def compose(summary: Summary, sender: str, recipients: Sequence[str], attachments: Sequence[Attachment],
            date: datetime) -> EmailMessage:
    """The message: plain text first, the HTML alternative, then each attachment."""
    message = EmailMessage()
    message["Subject"] = summary.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date)
    # The sender's domain, not the host's name: make_msgid would otherwise ask DNS for it.
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2])
    message.set_content(summary.text)
    message.add_alternative(summary.html, subtype="html")
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split(";", 1)[0].strip().split("/", 1)
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message
