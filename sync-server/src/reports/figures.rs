//! The dashboard's figures for a grid and a period: directory, patrol coverage, rapid tests, findings, rectifications.
