"""Traffic routers: what sends an environment's traffic to its instances."""
