"""Training examples: exact Qwen2.5-VL lengths (tokens), assembling QA into full documents, sampling to the window,
mixture and budget, and the statistics and charts of an assembly.
"""
