"""Shared end-to-end harness: child processes, Prometheus client (stack), and a devnet of real
nodes with ethwatch attached (devnet). Used by tests/alerts and tests/dashboards."""
