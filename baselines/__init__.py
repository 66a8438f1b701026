"""Registered supervised and simple baseline methods."""
