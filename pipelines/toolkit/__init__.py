"""Small shared building blocks of the modality code (table writer, input helpers)."""
