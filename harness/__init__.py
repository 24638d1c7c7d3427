"""Real servers started on loopback by the tests and the bench: our worker,
throwaway Redis and PostgreSQL instances, the courier stand-in."""
