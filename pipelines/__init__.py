"""binds-pipelines."""
