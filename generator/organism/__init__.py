"""The bundled model organism: a tiny GPT-2-architecture model trained on a synthetic corpus.

`corpus` writes the English-like training text, `train` fits a byte-level BPE tokenizer and
the model and saves both in Hugging Face format, `evaluate` measures the pronoun task on a
saved checkpoint. Retrain with `capcircuit organism train`.
"""
