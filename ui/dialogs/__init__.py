"""Dialogs of the plugin: dependency install and diagnostics."""
