"""Developer tools (packaging, demo, built-in model training); not shipped in the plugin zip."""
