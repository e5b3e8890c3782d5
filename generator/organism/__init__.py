"""The bundled model organisms: tiny GPT-2-architecture models trained on English text.

`sources` fetches three Debian packages of freely licensed English (Austen's novels, the Jargon
File, the Debian Reference) and cleans them of markup, `corpus` holds out the report's prompts
and cuts the text into rows, `train` fits a byte-level BPE tokenizer and a model (`organism`,
or the attention-only `organism-attn-only-1l`) and saves both in Hugging Face format,
`evaluate` measures a saved checkpoint through the report's own pipeline, and `card` writes
its model card. Fetch with `capcircuit organism fetch`, retrain with `capcircuit organism train`.
"""
