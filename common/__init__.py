"""Code shared by training and serving, in two families that never mix.

Torch-free contracts (this folder): settings, domain errors, labels, image decoding, the typed
wire format between gateway and worker, the Redis store, messaging, live quality and offline
metrics. The ML code lives in `common.ml` (torch), which only training and the workers' pool
processes import.
"""
