"""Excel and PDF exports of the dashboard, and the scheduled report email (docs/reports.md).

- :mod:`.render`: ``render(form, dashboard, rows)`` for ``xlsx`` and ``pdf``, importing the
  optional extra's libraries only then (:mod:`.xlsx`, :mod:`.pdf` with :mod:`.pdf_charts` and
  :mod:`.pdf_fonts`).
- :mod:`.figures`, :mod:`.formatting`, :mod:`.highlights`: the tidy rows grouped for reading,
  numbers as a person reads them, and what a report puts first.
- :mod:`.summary` and :mod:`.message`: the email's body and the message with its attachments.
- :mod:`.schedule` and :mod:`.config`: ``reports:`` and ``smtp:`` in the configuration.
- :mod:`.smtp`: sending, retried with back-off, in a worker thread.

Nothing here but :mod:`.xlsx` and the ``pdf*`` modules imports a report library.
"""
