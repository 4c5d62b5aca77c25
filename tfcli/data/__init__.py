"""Text in, ids out: reading parallel files (text.py), sentencepiece (tokenizer.py), sentence
pairs and their filters (pairs.py), and padded token-budget batches (batching.py)."""
