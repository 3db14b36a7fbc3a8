"""Benchmark decontamination: MinHash signatures and LSH, page-image hashes, the benchmark index and the checks that
match a pool document against it.
"""
