"""`python -m longdocvqa` runs the command line."""

from longdocvqa.cli import main

main()
