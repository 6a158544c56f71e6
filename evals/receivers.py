"""What evals does when other apps' signals fire (connected in EvalsConfig.ready)."""
