"""`hero_codescalers`: run the service or the simulator, and call the service.

This package holds the command group, `main` (the program's entry point, and
`python -m hero_codescalers`); its commands live in `processes` (`serve`,
`simulator`, `dev`) and `client` (the calls to the service), the options they
share in `options`, and what they print and exit with in `output`.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from . import client, processes
from .output import EXIT_ANSWERED_ERROR, EXIT_CANCELLED, EXIT_USAGE

__all__ = ["main"]


class _Commands(click.Group):
    """The command group; a usage error is told in one line (click prints three)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "hero_codescalers"
            click.echo(f"{where}: {exc.format_message()} (see {where} --help)", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                sys.exit(EXIT_CANCELLED)  # click has ended the ^C line on stderr
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_ANSWERED_ERROR)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    commands=[*processes.COMMANDS, *client.COMMANDS],
)
@click.version_option(__version__, prog_name="hero_codescalers")
def main() -> None:
    """Tag what hero_codescalers enqueues in hero_proc, and clean it up.

    Results print for people on a terminal and as JSON otherwise (--output
    table|json on the commands that print results).

    \b
    Exit status:
      0    success; a cleanup deleted everything it selected, or found it gone
           (also when it stopped at its --max-jobs bound: has_more)
      1    the service answered an error (or a confirmation was declined)
      2    a usage or configuration error
      3    the service could not be reached
      4    degraded (health: hero_proc does not answer) or partial (jobs-cleanup,
           policies run: stopped short, malformed jobs skipped, or a job or
           action failed for another reason than being in use)
      130  cancelled by Ctrl-C
    """
