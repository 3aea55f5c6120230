"""Thin actor shells around the pure core, one module each."""
