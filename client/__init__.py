"""`catdog`: the command-line client of the catdog service (httpx only, no torch)."""
