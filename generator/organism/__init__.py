"""The bundled model organisms: tiny GPT-2-architecture models trained on a synthetic corpus.

`corpus` writes the English-like training text, `train` fits a byte-level BPE tokenizer and
a model (`organism`, or the attention-only `organism-attn-only-1l`) and saves both in Hugging
Face format, `evaluate` measures a saved checkpoint through the report's own pipeline, and
`card` writes its model card. Retrain with `capcircuit organism train`.
"""
