"""Measure what a config lets through: detection recall/precision, leak rate, collateral."""
