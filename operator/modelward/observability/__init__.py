"""Metrics and logging: what modelward tells its operators about itself."""
