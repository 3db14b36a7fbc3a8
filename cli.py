"""Console entry point shim: the Typer app lives in longdocvqa/cli/ (so it ships with the package)."""

from longdocvqa.cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
