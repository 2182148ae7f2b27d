"""Figures and tables for papers, read from MLflow runs only (never imports harness.run.recipe)."""
