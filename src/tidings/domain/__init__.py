"""Pure domain logic: no database, no network, no environment."""
