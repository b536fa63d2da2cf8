"""The user-facing API: CRD schemas (the one source of truth), wire types, webhook rules."""
