"""Pure scheduling policies: routing (policies.routing) and engine-local (policies.engine)."""
