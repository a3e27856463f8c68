"""Model files: the card (schema, validation before anything is allocated), safetensors weights,
the built-in models shipped with the plugin, and the card's summary for dialogs."""
