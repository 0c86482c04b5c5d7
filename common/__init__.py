"""Code shared by training and serving: settings, labels, image decoding, preprocessing,
model definitions and model loading.

Importing this package (or `common.settings`, `common.labels`, `common.errors`,
`common.imaging`) never imports torch, so the gateway can use them without it.
"""
