"""The floor every other folder stands on: records, the recipe, errors, fingerprints, the run directory (store), safe
text, the published contract and the build history. Imports nothing above it.
"""
