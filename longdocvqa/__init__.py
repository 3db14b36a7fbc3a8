"""longdocvqa: long-document VQA datasets for long-context continued pre-training of VLMs.

Importing the package is cheap; heavy libraries are imported by the modules that need them.
"""

__version__ = "0.1.0"
