"""Sub-commands of the ``osmarkets`` command line, one module each.

A module here defines ``add_parser(subparsers)``, which adds its parser and sets
``handler=function(args) -> exit status`` with ``set_defaults``. Raise
:class:`osmarkets.cli.UsageError` for bad input: the CLI prints it as one line and exits 2.
"""
