"""memwarden pytest plugin (being written)."""
