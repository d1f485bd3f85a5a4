//! Exports of the directory, visits, rapid tests, rectifications and per-person activity as XLSX and CSV, streamed with bounded memory.
