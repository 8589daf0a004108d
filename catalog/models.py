"""Reward catalog. Models arrive with the issue that builds this context (see DESIGN.md)."""
