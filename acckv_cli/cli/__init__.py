"""Stage 7, the command line: Typer declarations (`app`), shared flags (`flags`), one body per verb (`commands/`).

Nothing below this stage imports it; bodies import their stages lazily so that `--help` and argument errors
never load torch.
"""
