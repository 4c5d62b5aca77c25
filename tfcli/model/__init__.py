"""The Transformer: its parts (layers.py), the whole model (transformer.py), the decoder's
caches for step-by-step decoding (decoder_state.py), the training loss (loss.py) and the CPU
kernels beneath them (kernels.py)."""
